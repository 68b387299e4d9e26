//! `amqp://` and `amqps://` URL options, read strictly: every option is documented in `docs.md`.

use std::path::PathBuf;
use std::time::Duration;

use switchboard_core::endpoint::Endpoint;
use switchboard_core::error::{Error, Result};

/// The options `amqp://` URLs accept (besides the core `request_timeout`).
pub const OPTIONS: &[&str] = &[
    "exchange",
    "durable",
    "auto_delete",
    "message_ttl",
    "prefetch",
    "connect_timeout",
    "publish_timeout",
    "max_payload",
    "tls_ca",
];

/// Default name of the topic exchange subjects are routed on.
pub const DEFAULT_EXCHANGE: &str = "switchboard";
/// Default deliveries a subscription holds unacknowledged.
pub const DEFAULT_PREFETCH: u16 = 256;
/// Default time allowed to establish the connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on one publish, until the broker confirms it.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest payload sent (RabbitMQ's own limit, `max_message_size`,
/// is 128 MiB by default; `scripts/rabbitmq-server.sh` sets 16 MiB).
pub const DEFAULT_MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Settings of a RabbitMQ connection.
#[derive(Clone)]
pub struct AmqpSettings {
    /// The URL lapin connects with: credentials and virtual host, no options.
    pub(crate) uri: String,
    /// The URL as shown in errors (password hidden).
    pub shown_url: String,
    /// Whether the connection uses TLS (`amqps://`).
    pub tls: bool,
    /// PEM file of the CA that signed the broker's certificate (`tls_ca`);
    /// without it the system's trusted roots are used.
    pub tls_ca: Option<PathBuf>,
    /// The topic exchange subjects are routed on (`exchange`).
    pub exchange: String,
    /// Exchange and group queues survive a broker restart, and events are
    /// stored persistently (`durable`, default `true`).
    pub durable: bool,
    /// A group's queue is deleted when its last member leaves, dropping
    /// events published while it is away (`auto_delete`, default `false`).
    pub auto_delete: bool,
    /// Events older than this are dropped from group queues (`message_ttl`).
    pub message_ttl: Option<Duration>,
    /// Deliveries a subscription holds unacknowledged (`prefetch`).
    pub prefetch: u16,
    /// Time allowed for the connection (`connect_timeout`).
    pub connect_timeout: Duration,
    /// Bound on one publish until the broker's confirm (`publish_timeout`).
    pub publish_timeout: Duration,
    /// Largest payload sent (`max_payload`).
    pub max_payload: usize,
}

impl std::fmt::Debug for AmqpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSettings")
            .field("url", &self.shown_url)
            .field("exchange", &self.exchange)
            .field("durable", &self.durable)
            .field("auto_delete", &self.auto_delete)
            .field("message_ttl", &self.message_ttl)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

impl AmqpSettings {
    /// The topic exchange requests are routed on (`EXCHANGE.requests`): its
    /// queues live only while a responder is there, so a request nobody can
    /// answer fails at once instead of waiting in a queue.
    pub fn requests_exchange(&self) -> String {
        format!("{}.requests", self.exchange)
    }

    /// Reads an `amqp://` or `amqps://` endpoint.
    pub fn from_endpoint(endpoint: Endpoint) -> Result<Self> {
        let Endpoint {
            mut url,
            hosts,
            mut options,
        } = endpoint;
        let tls = match url.scheme() {
            "amqp" => false,
            "amqps" => true,
            other => {
                return Err(Error::config(format!(
                    "the RabbitMQ backend serves amqp:// and amqps://, not {other}://"
                )))
            }
        };
        match hosts.len() {
            1 => {}
            0 => {
                return Err(Error::config(
                    "amqp URL needs a broker: amqp://[USER:PASSWORD@]HOST[:PORT][/VHOST]",
                ))
            }
            _ => {
                return Err(Error::config(
                    "amqp URL takes one broker; a RabbitMQ cluster is reached through one address (a load balancer or any node)",
                ))
            }
        }
        let exchange = options
            .take("exchange")
            .unwrap_or_else(|| DEFAULT_EXCHANGE.to_owned());
        if exchange.is_empty()
            || exchange.starts_with("amq.")
            || exchange.len() > 255 - ".requests".len()
            || !exchange
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(Error::config(format!(
                "option `exchange`: `{exchange}` is not an exchange name switchboard can declare (letters, digits, `-_.:`, not starting with `amq.`)"
            )));
        }
        let durable = options.take_bool("durable")?.unwrap_or(true);
        let auto_delete = options.take_bool("auto_delete")?.unwrap_or(false);
        let message_ttl = options.take_duration("message_ttl")?;
        if message_ttl.is_some_and(|ttl| ttl.as_millis() == 0 || ttl.as_millis() > u32::MAX as u128)
        {
            return Err(Error::config(
                "option `message_ttl`: between 1 ms and 49 days",
            ));
        }
        let prefetch = options
            .take_parsed::<u16>("prefetch")?
            .unwrap_or(DEFAULT_PREFETCH);
        if prefetch == 0 {
            return Err(Error::config(
                "option `prefetch`: at least 1 (0 would let the broker push without bound)",
            ));
        }
        let connect_timeout = options
            .take_duration("connect_timeout")?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let publish_timeout = options
            .take_duration("publish_timeout")?
            .unwrap_or(DEFAULT_PUBLISH_TIMEOUT);
        let max_payload = options
            .take_parsed::<usize>("max_payload")?
            .unwrap_or(DEFAULT_MAX_PAYLOAD);
        let tls_ca = options.take("tls_ca").map(PathBuf::from);
        if tls_ca.is_some() && !tls {
            return Err(Error::config(
                "option `tls_ca` needs amqps:// (TLS); amqp:// is plain TCP",
            ));
        }
        if let Some(ca) = &tls_ca {
            std::fs::metadata(ca).map_err(|e| {
                Error::config(format!(
                    "option `tls_ca`: cannot read {}: {e}",
                    ca.display()
                ))
            })?;
        }
        options.finish("amqp", OPTIONS)?;
        url.set_query(None);
        url.set_fragment(None);
        let shown_url = switchboard_core::endpoint::redact(url.as_str());
        Ok(AmqpSettings {
            uri: url.to_string(),
            shown_url,
            tls,
            tls_ca,
            exchange,
            durable,
            auto_delete,
            message_ttl,
            prefetch,
            connect_timeout,
            publish_timeout,
            max_payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> Result<AmqpSettings> {
        AmqpSettings::from_endpoint(Endpoint::parse(url)?)
    }

    #[test]
    fn defaults_and_options() {
        let plain = settings("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(plain.exchange, DEFAULT_EXCHANGE);
        assert!(plain.durable && !plain.auto_delete && !plain.tls);
        assert_eq!(plain.uri, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert!(
            !plain.shown_url.contains("guest:guest"),
            "{}",
            plain.shown_url
        );
        let tuned = settings(
            "amqp://127.0.0.1?exchange=shop&durable=false&auto_delete=true&message_ttl=10m&prefetch=16",
        )
        .unwrap();
        assert_eq!(tuned.exchange, "shop");
        assert!(!tuned.durable && tuned.auto_delete);
        assert_eq!(tuned.message_ttl, Some(Duration::from_secs(600)));
        assert_eq!(tuned.prefetch, 16);
        assert_eq!(tuned.uri, "amqp://127.0.0.1");
    }

    #[test]
    fn bad_options_are_refused_with_a_reason() {
        for (url, expected) in [
            ("amqp://127.0.0.1?prefech=5", "prefetch"),
            ("amqp://127.0.0.1?prefetch=0", "prefetch"),
            ("amqp://127.0.0.1?exchange=amq.topic", "exchange"),
            ("amqp://127.0.0.1?durable=maybe", "durable"),
            ("amqp://a:1,b:2", "one broker"),
            ("amqp://127.0.0.1?tls_ca=/nonexistent.pem", "amqps"),
            ("amqps://127.0.0.1?tls_ca=/nonexistent.pem", "cannot read"),
        ] {
            let err = settings(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }
}
