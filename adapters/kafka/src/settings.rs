//! `kafka://` URL options, read strictly: every option is documented in `docs.md`.

use std::time::Duration;

use rdkafka::ClientConfig;

use switchboard_core::endpoint::Endpoint;
use switchboard_core::error::{Error, Result};

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
    "pattern_refresh",
    "linger",
    "max_payload",
    "buffer",
    "sasl_mechanism",
    "tls",
    "tls_ca",
    "tls_cert",
    "tls_key",
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
/// Default bound on how long a pattern subscription takes to see a topic created after it.
pub const DEFAULT_PATTERN_REFRESH: Duration = Duration::from_secs(2);
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
    /// Bound on a subscription's start (`assignment_timeout`): its topic in
    /// the metadata with every partition led, then the partition assignment.
    pub assignment_timeout: Duration,
    /// Broker-side wait of a fetch (`fetch_wait`, librdkafka `fetch.wait.max.ms`).
    pub fetch_wait: Duration,
    /// How often a pattern subscription looks for new matching topics
    /// (`pattern_refresh`, librdkafka `topic.metadata.refresh.interval.ms`).
    pub pattern_refresh: Duration,
    /// Producer batching delay (`linger`, librdkafka `linger.ms`).
    pub linger: Duration,
    /// Largest payload accepted (`max_payload`).
    pub max_payload: usize,
    /// Messages queued per subscription (`buffer`).
    pub buffer: usize,
    /// SASL user and password, from the URL's userinfo (`kafka://USER:PASSWORD@HOST`).
    pub sasl: Option<Sasl>,
    /// TLS to the brokers, when `tls=true` or any `tls_*` option is given.
    pub tls: Option<KafkaTls>,
    /// `rdkafka.NAME=VALUE` properties passed to every librdkafka client.
    pub extra: Vec<(String, String)>,
}

/// SASL authentication (PLAIN or SCRAM; librdkafka's built-in mechanisms).
#[derive(Clone)]
pub struct Sasl {
    /// `sasl_mechanism`: `PLAIN` (default), `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The user name.
    pub username: String,
    /// The password (never printed by `Debug`).
    pub password: String,
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// TLS to the brokers: the CA to trust and, for brokers that verify clients, a client certificate.
#[derive(Debug, Clone, Default)]
pub struct KafkaTls {
    /// PEM file of the CA that signed the brokers' certificates (`tls_ca`);
    /// without it the system's trusted roots are used.
    pub ca: Option<String>,
    /// PEM files of this client's certificate and key (`tls_cert`, `tls_key`).
    pub client: Option<(String, String)>,
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
        if !matches!(url.path(), "" | "/") {
            return Err(Error::config(
                "kafka URL takes no path: kafka://[USER:PASSWORD@]HOST:PORT?options",
            ));
        }
        let sasl = read_sasl(&url, &mut options)?;
        let tls = read_tls(&mut options)?;
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
            pattern_refresh: options
                .take_duration("pattern_refresh")?
                .unwrap_or(DEFAULT_PATTERN_REFRESH),
            linger: match options.take("linger").as_deref() {
                Some("0") | Some("0ms") => Duration::ZERO,
                Some(raw) => switchboard_core::options::parse_duration("linger", raw)?,
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
            sasl,
            tls,
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
        let protocol = match (&self.sasl, &self.tls) {
            (None, None) => "plaintext",
            (None, Some(_)) => "ssl",
            (Some(_), None) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanisms", &sasl.mechanism)
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca {
                config.set("ssl.ca.location", ca);
            }
            if let Some((cert, key)) = &tls.client {
                config
                    .set("ssl.certificate.location", cert)
                    .set("ssl.key.location", key);
            }
        }
        // `rdkafka.*` comes last, so it can still override any of the above.
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }
}

/// SASL from `kafka://USER:PASSWORD@HOST` and `sasl_mechanism`.
fn read_sasl(
    url: &url::Url,
    options: &mut switchboard_core::options::Options,
) -> Result<Option<Sasl>> {
    let mechanism = options.take("sasl_mechanism");
    if url.username().is_empty() {
        return match mechanism {
            Some(_) => Err(Error::config(
                "option `sasl_mechanism` needs a user: kafka://USER:PASSWORD@HOST:PORT",
            )),
            None => Ok(None),
        };
    }
    let mechanism = mechanism.unwrap_or_else(|| "PLAIN".to_owned());
    if !matches!(
        mechanism.as_str(),
        "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
    ) {
        return Err(Error::config(format!(
            "option `sasl_mechanism`: `{mechanism}` is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
        )));
    }
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|decoded| decoded.into_owned())
            .map_err(|_| {
                Error::config("URL credentials are not valid UTF-8 after percent-decoding")
            })
    };
    Ok(Some(Sasl {
        mechanism,
        username: decode(url.username())?,
        password: decode(url.password().unwrap_or_default())?,
    }))
}

/// `tls`, `tls_ca`, `tls_cert` and `tls_key`: TLS is on when `tls=true` or a file is named.
fn read_tls(options: &mut switchboard_core::options::Options) -> Result<Option<KafkaTls>> {
    let required = options.take_bool("tls")?;
    let ca = options.take("tls_ca");
    let client =
        match (options.take("tls_cert"), options.take("tls_key")) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(Error::config(
                "options `tls_cert` and `tls_key` go together: the client certificate and its key",
            )),
        };
    let named = ca.is_some() || client.is_some();
    for path in ca.iter().chain(client.iter().flat_map(|(c, k)| [c, k])) {
        std::fs::metadata(path)
            .map_err(|e| Error::config(format!("TLS file {path}: cannot read it: {e}")))?;
    }
    match required {
        Some(false) if named => Err(Error::config(
            "option `tls=false` contradicts `tls_ca`/`tls_cert`: leave out `tls`, or the files",
        )),
        Some(true) => Ok(Some(KafkaTls { ca, client })),
        _ if named => Ok(Some(KafkaTls { ca, client })),
        _ => Ok(None),
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
        let secured =
            settings("kafka://alice:p%40ss@k?sasl_mechanism=SCRAM-SHA-512&tls=true").unwrap();
        let sasl = secured.sasl.clone().unwrap();
        assert_eq!(
            (sasl.username.as_str(), sasl.password.as_str()),
            ("alice", "p@ss")
        );
        assert!(
            !format!("{sasl:?}").contains("p@ss"),
            "Debug hides the password"
        );
        let config = secured.client_config();
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(
            settings("kafka://k")
                .unwrap()
                .client_config()
                .get("security.protocol"),
            Some("plaintext")
        );
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
            ("kafka://a?sasl_mechanism=PLAIN", "needs a user"),
            ("kafka://u:p@a?sasl_mechanism=GSSAPI", "not PLAIN"),
            ("kafka://a?tls_cert=/nonexistent.pem", "go together"),
            ("kafka://a?tls_ca=/nonexistent/ca.pem", "cannot read"),
        ] {
            let err = settings(url).unwrap_err();
            assert!(err.to_string().contains(expected), "{url}: {err}");
        }
    }
}
