//! `kafka://` URL options, read strictly: every option is documented in `docs.md`.

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::connect::Endpoint;
use crate::error::{Error, Result};

/// The options `kafka://` URLs accept (besides the core `request_timeout` and
/// `rdkafka.*` pass-through properties).
pub const OPTIONS: &[&str] = &[
    "client_id",
    "group_prefix",
    "partitions",
    "replication",
    "create_topics",
    "offset_reset",
    "delivery_timeout",
    "connect_timeout",
    "assignment_timeout",
    "fetch_wait",
    "linger",
    "max_payload",
    "buffer",
    "rdkafka.<property>",
];

/// Default partitions of topics switchboard creates.
pub const DEFAULT_PARTITIONS: i32 = 4;
/// Default bound on one publish, until the broker acknowledged it.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on reaching the broker at connect time.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on joining a consumer group and receiving a partition assignment.
pub const DEFAULT_ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default longest time the broker holds a fetch waiting for data.
pub const DEFAULT_FETCH_WAIT: Duration = Duration::from_millis(10);
/// Default largest payload (librdkafka's default `message.max.bytes`).
pub const DEFAULT_MAX_PAYLOAD: usize = 1_000_000;
/// Default number of messages queued per subscription before fetching pauses.
pub const DEFAULT_BUFFER: usize = 1024;

/// Where a consumer group with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// At the oldest retained event: nothing published before the group's
    /// first subscription is missed.
    Earliest,
    /// At the next event published.
    Latest,
}

/// Settings of a Kafka connection.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port` of every bootstrap broker.
    pub brokers: Vec<String>,
    /// Client id shown by the broker (`client_id`).
    pub client_id: String,
    /// Prefix of every consumer group id (`group_prefix`).
    pub group_prefix: String,
    /// Partitions of created topics (`partitions`).
    pub partitions: i32,
    /// Replication factor of created topics (`replication`).
    pub replication: i32,
    /// Whether missing topics are created (`create_topics`).
    pub create_topics: bool,
    /// Start of a consumer group without committed offsets (`offset_reset`).
    pub offset_reset: OffsetReset,
    /// Bound on one publish until acknowledged (`delivery_timeout`).
    pub delivery_timeout: Duration,
    /// Bound on reaching the broker at connect (`connect_timeout`).
    pub connect_timeout: Duration,
    /// Bound on receiving a partition assignment (`assignment_timeout`).
    pub assignment_timeout: Duration,
    /// Broker-side wait of a fetch (`fetch_wait`, librdkafka `fetch.wait.max.ms`).
    pub fetch_wait: Duration,
    /// Producer batching delay (`linger`, librdkafka `linger.ms`).
    pub linger: Duration,
    /// Largest payload accepted (`max_payload`).
    pub max_payload: usize,
    /// Messages queued per subscription (`buffer`).
    pub buffer: usize,
    /// `rdkafka.NAME=VALUE` properties passed to every librdkafka client.
    pub extra: Vec<(String, String)>,
}

impl KafkaSettings {
    /// Reads a `kafka://` endpoint.
    pub fn from_endpoint(endpoint: Endpoint) -> Result<Self> {
        let Endpoint {
            url,
            hosts,
            mut options,
        } = endpoint;
        if hosts.is_empty() {
            return Err(Error::config(
                "kafka URL needs at least one broker: kafka://HOST:PORT[,HOST:PORT]",
            ));
        }
        if !matches!(url.path(), "" | "/") || !url.username().is_empty() {
            return Err(Error::config(
                "kafka URL takes no path or credentials; pass SASL settings as rdkafka.* options",
            ));
        }
        let brokers = hosts
            .iter()
            .map(|host| match host.rsplit_once(':') {
                Some((_, port)) if port.parse::<u16>().is_ok() => host.clone(),
                _ => format!("{host}:9092"),
            })
            .collect();
        let extra = options.take_prefixed("rdkafka.");
        let offset_reset = match options.take("offset_reset").as_deref() {
            None | Some("earliest") => OffsetReset::Earliest,
            Some("latest") => OffsetReset::Latest,
            Some(other) => {
                return Err(Error::config(format!(
                    "option `offset_reset`: expected earliest or latest, got `{other}`"
                )))
            }
        };
        let positive = |key: &str, value: Option<i32>, default: i32| -> Result<i32> {
            match value {
                Some(v) if v < 1 => {
                    Err(Error::config(format!("option `{key}` must be at least 1")))
                }
                Some(v) => Ok(v),
                None => Ok(default),
            }
        };
        let settings = KafkaSettings {
            brokers,
            client_id: options
                .take("client_id")
                .unwrap_or_else(|| "switchboard".to_owned()),
            group_prefix: options.take("group_prefix").unwrap_or_default(),
            partitions: positive(
                "partitions",
                options.take_parsed("partitions")?,
                DEFAULT_PARTITIONS,
            )?,
            replication: positive("replication", options.take_parsed("replication")?, 1)?,
            create_topics: options.take_bool("create_topics")?.unwrap_or(true),
            offset_reset,
            delivery_timeout: options
                .take_duration("delivery_timeout")?
                .unwrap_or(DEFAULT_DELIVERY_TIMEOUT),
            connect_timeout: options
                .take_duration("connect_timeout")?
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            assignment_timeout: options
                .take_duration("assignment_timeout")?
                .unwrap_or(DEFAULT_ASSIGNMENT_TIMEOUT),
            fetch_wait: options
                .take_duration("fetch_wait")?
                .unwrap_or(DEFAULT_FETCH_WAIT),
            linger: match options.take("linger").as_deref() {
                Some("0") | Some("0ms") => Duration::ZERO,
                Some(raw) => crate::options::parse_duration("linger", raw)?,
                None => Duration::ZERO,
            },
            max_payload: options
                .take_parsed("max_payload")?
                .unwrap_or(DEFAULT_MAX_PAYLOAD),
            buffer: positive(
                "buffer",
                options.take_parsed("buffer")?,
                DEFAULT_BUFFER as i32,
            )? as usize,
            extra,
        };
        options.finish("kafka://", OPTIONS)?;
        Ok(settings)
    }

    /// The librdkafka configuration every client of this connection starts from.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.brokers.join(","))
            .set("client.id", &self.client_id)
            // Small requests matter more than bandwidth for request/reply latency.
            .set("socket.nagle.disable", "true");
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> Result<KafkaSettings> {
        KafkaSettings::from_endpoint(Endpoint::parse(url)?)
    }

    #[test]
    fn reads_every_option() {
        let s = settings(
            "kafka://a:9092,b?client_id=orders&group_prefix=prod.&partitions=8&replication=3\
             &create_topics=false&offset_reset=latest&delivery_timeout=2s&connect_timeout=1s\
             &assignment_timeout=9s&fetch_wait=5ms&linger=2ms&max_payload=2000000&buffer=16\
             &rdkafka.security.protocol=plaintext",
        )
        .unwrap();
        assert_eq!(s.brokers, ["a:9092", "b:9092"]);
        assert_eq!(s.client_id, "orders");
        assert_eq!(s.group_prefix, "prod.");
        assert_eq!((s.partitions, s.replication), (8, 3));
        assert!(!s.create_topics);
        assert_eq!(s.offset_reset, OffsetReset::Latest);
        assert_eq!(s.fetch_wait, Duration::from_millis(5));
        assert_eq!(s.linger, Duration::from_millis(2));
        assert_eq!((s.max_payload, s.buffer), (2_000_000, 16));
        assert_eq!(
            s.extra,
            [("security.protocol".to_owned(), "plaintext".to_owned())]
        );
        assert_eq!(settings("kafka://k").unwrap().linger, Duration::ZERO);
    }

    #[test]
    fn rejects_bad_options() {
        for (url, expected) in [
            ("kafka://", "at least one broker"),
            ("kafka://a/x", "no path"),
            ("kafka://a?partitions=0", "`partitions` must be at least 1"),
            ("kafka://a?offset_reset=middle", "offset_reset"),
            ("kafka://a?create_topics=maybe", "create_topics"),
            ("kafka://a?colour=blue", "unknown option `colour`"),
        ] {
            let err = settings(url).unwrap_err();
            assert!(err.to_string().contains(expected), "{url}: {err}");
        }
    }
}
