//! `connect`: a [`Bus`] on the backend a URL names.

use crate::bus::Bus;
use crate::endpoint::Endpoint;
use crate::error::Result;
use crate::registry::{backends, find_in};

/// Connects to the backend named by `url`'s scheme.
///
/// | URL | backend | feature |
/// |---|---|---|
/// | `memory://` or `memory://NAME` | in-process | `memory` (default) |
/// | `http://HOST:PORT?…` | HTTP | `http` |
/// | `grpc://HOST:PORT?…`, `grpcs://…` | gRPC | `grpc` |
/// | `nats://HOST:PORT[,HOST:PORT]?…` | NATS | `nats` |
/// | `kafka://HOST:PORT[,HOST:PORT]?…` | Kafka | `kafka` |
/// | `amqp://[USER:PASSWORD@]HOST:PORT[/VHOST]?…`, `amqps://…` | RabbitMQ | `amqp` |
/// | `redis://[USER:PASSWORD@]HOST:PORT[/DB]?…`, `rediss://…` | Redis Streams | `redis` |
///
/// Every URL also accepts `request_timeout=DURATION` (e.g. `500ms`, `5s`): the
/// default timeout of [`Bus::request`]. Other options are the adapter's own; an
/// unknown option is an error.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bus = switchboard::connect("memory://").await.unwrap();
/// assert_eq!(bus.backend(), "memory");
///
/// let err = switchboard::connect("bogus://x").await.unwrap_err();
/// assert!(err.to_string().contains("unknown URL scheme `bogus`"));
/// # }
/// ```
pub async fn connect(url: &str) -> Result<Bus> {
    let mut endpoint = Endpoint::parse(url)?;
    let request_timeout = endpoint.options.take_duration("request_timeout")?;
    let backend = find_in(&backends(), endpoint.url.scheme())?;
    let connect = backend.connect.expect("find returns enabled backends only");
    let transport = connect(endpoint).await?;
    let bus = Bus::new(transport).with_url(url);
    Ok(match request_timeout {
        Some(timeout) => bus.with_default_timeout(timeout),
        None => bus,
    })
}
