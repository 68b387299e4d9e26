//! The connections: the client for the settings, reconnecting connections
//! (with what the server pushes handed to a callback), and what a transport
//! and its subscriptions share.

use std::time::Duration;

use redis::aio::{AsyncPushSender, ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, ProtocolVersion};
use tokio::sync::watch;

use super::acks::AckQueue;
use super::reachability::Reachability;
use super::settings::RedisSettings;
use switchboard_core::error::{Error, Result};

/// What the transport and its subscriptions share.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) settings: RedisSettings,
    /// Publishes, acknowledgements, claims; the transport's reply channel
    /// is subscribed on it too.
    pub(crate) commands: ConnectionManager,
    /// Turns `true` when the transport closes: subscriptions end.
    pub(crate) closed: watch::Receiver<bool>,
    /// Acknowledgements of group events, sent in batches on `commands`.
    pub(crate) acks: AckQueue,
    /// Whether the server answered the last command: what `health` reports.
    pub(crate) reachability: Reachability,
}

/// The client for `settings`: RESP3 (pushed messages share the command
/// connection), TLS with the given CA for `rediss://`.
pub(crate) fn client(settings: &RedisSettings) -> Result<Client> {
    let info = settings
        .uri
        .as_str()
        .into_connection_info()
        .map_err(|e| Error::config(format!("{}: {e}", settings.shown_url)))?;
    let redis_settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let info = info.set_redis_settings(redis_settings);
    let built = match &settings.tls_ca {
        Some(ca) => {
            let root = std::fs::read(ca).map_err(|e| {
                Error::config(format!(
                    "option `tls_ca`: cannot read {}: {e}",
                    ca.display()
                ))
            })?;
            Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                },
            )
        }
        None => Client::open(info),
    };
    built.map_err(|e| Error::config(format!("{}: {e}", settings.shown_url)))
}

/// A reconnecting connection; `push` receives what the server pushes
/// (messages on subscribed channels), and its subscriptions are made again
/// after a reconnect.
pub(crate) async fn manager(
    client: &Client,
    settings: &RedisSettings,
    push: Option<impl AsyncPushSender>,
    response_timeout: Option<Duration>,
) -> Result<ConnectionManager> {
    let mut config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(response_timeout)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(2))
        .set_number_of_retries(30);
    if let Some(push) = push {
        config = config.set_push_sender(push).set_automatic_resubscription();
    }
    tokio::time::timeout(
        settings.connect_timeout,
        client.get_connection_manager_with_config(config),
    )
    .await
    .map_err(|_| connect_error(settings, "timed out".into()))?
    .map_err(|e| connect_error(settings, e.into()))
}

pub(crate) fn connect_error(
    settings: &RedisSettings,
    source: switchboard_core::error::BoxError,
) -> Error {
    Error::Connect {
        url: settings.shown_url.clone(),
        source,
    }
}
