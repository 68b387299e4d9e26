//! `nats://` URL options, read strictly: every option is documented in `docs.md`.

use std::path::PathBuf;
use std::time::Duration;

use switchboard_core::endpoint::Endpoint;
use switchboard_core::error::{Error, Result};
use switchboard_core::subject;

/// The options `nats://` URLs accept (besides the core `request_timeout`).
pub const OPTIONS: &[&str] = &[
    "name",
    "token",
    "creds",
    "subscription_capacity",
    "pending_bytes",
    "tls",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "connect_timeout",
    "max_reconnects",
    "reconnect_delay_max",
    "publish_timeout",
    "jetstream",
    "jetstream_subjects",
    "jetstream_replicas",
    "ack_wait",
];

/// Default time allowed to establish the first connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default longest wait between reconnect attempts.
pub const DEFAULT_RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);
/// Default bound on one publish, including a JetStream acknowledgement.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of messages a subscription's queue holds in the client:
/// what arrives while the subscription's route is not running (a burst
/// faster than the handler, a busy machine that does not schedule the
/// route for a while) waits there. At a million messages a second,
/// async-nats' own default of 65,536 fills in 65 ms; this holds half a
/// second. The queue allocates as it fills, so a subscription that keeps up
/// costs nothing for the larger bound. A core subscription moves what
/// waits on into a buffer of `pending_bytes`, and when both are full, core
/// NATS messages are dropped.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 524_288;
/// Default bytes (as received: subject, headers, payload) a core
/// subscription buffers beyond the client's queue while its handler falls
/// behind: 64 MiB, the pending-bytes limit of the Go client (nats.go).
pub const DEFAULT_PENDING_BYTES: usize = 64 * 1024 * 1024;
/// Default time JetStream waits for an ack before redelivering.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// Settings of a NATS connection.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// `host:port` of every seed server.
    pub servers: Vec<String>,
    /// Client name shown by the server (`name`).
    pub name: Option<String>,
    /// User and password from the URL's userinfo.
    pub user_password: Option<(String, String)>,
    /// Token authentication (`token`).
    pub token: Option<String>,
    /// Path of a `.creds` file (`creds`).
    pub creds: Option<PathBuf>,
    /// TLS to the servers, when `tls=true` or any `tls_*` option is given.
    pub tls: Option<TlsFiles>,
    /// Time allowed for the first connection (`connect_timeout`).
    pub connect_timeout: Duration,
    /// Reconnect attempts before giving up; `None` retries forever (`max_reconnects`).
    pub max_reconnects: Option<usize>,
    /// Longest wait between reconnect attempts (`reconnect_delay_max`).
    pub reconnect_delay_max: Duration,
    /// Bound on one publish, including the JetStream ack (`publish_timeout`).
    pub publish_timeout: Duration,
    /// Messages queued per subscription in the client, ahead of the
    /// subscription's own buffer (`subscription_capacity`).
    pub subscription_capacity: usize,
    /// Bytes a core subscription buffers beyond that queue while its handler
    /// falls behind (`pending_bytes`); 0 buffers nothing.
    pub pending_bytes: usize,
    /// Durable mode, when `jetstream=STREAM` is given.
    pub jetstream: Option<JetStreamSettings>,
}

/// TLS to the servers: required once configured (a server without TLS is refused).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// PEM file of the CA that signed the servers' certificates (`tls_ca`);
    /// without it the system's trusted roots are used.
    pub ca: Option<PathBuf>,
    /// PEM files of this client's certificate and key (`tls_cert`, `tls_key`),
    /// for servers that verify clients (`verify: true`).
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Durable mode: which stream, which subjects it captures, how redelivery works.
#[derive(Debug, Clone)]
pub struct JetStreamSettings {
    /// The stream's name (`jetstream`).
    pub stream: String,
    /// Subjects the stream captures (`jetstream_subjects`, comma separated);
    /// empty means "use the existing stream's subjects".
    pub subjects: Vec<String>,
    /// Redelivery delay for messages not acknowledged (`ack_wait`).
    pub ack_wait: Duration,
    /// Copies of the stream a cluster keeps (`jetstream_replicas`, 1 to 5),
    /// when switchboard creates it: 3 survives the loss of a server.
    pub replicas: usize,
}

impl NatsSettings {
    /// Reads a `nats://` endpoint.
    pub fn from_endpoint(endpoint: Endpoint) -> Result<Self> {
        let Endpoint {
            url,
            hosts,
            mut options,
        } = endpoint;
        if hosts.is_empty() {
            return Err(Error::config(
                "nats URL needs at least one server: nats://HOST:PORT[,HOST:PORT]",
            ));
        }
        if !matches!(url.path(), "" | "/") {
            return Err(Error::config(format!(
                "nats URL takes no path (got `{}`)",
                url.path()
            )));
        }
        let servers = hosts
            .iter()
            .map(|host| {
                if host
                    .rsplit_once(':')
                    .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
                {
                    host.clone()
                } else {
                    format!("{host}:4222")
                }
            })
            .collect();
        let user_password = match (url.username(), url.password()) {
            ("", None) => None,
            (user, password) => Some((
                percent_decode(user)?,
                percent_decode(password.unwrap_or(""))?,
            )),
        };
        let jetstream = match options.take("jetstream") {
            None => {
                if options.take("jetstream_subjects").is_some()
                    || options.take("ack_wait").is_some()
                    || options.take("jetstream_replicas").is_some()
                {
                    return Err(Error::config(
                        "options `jetstream_subjects`, `jetstream_replicas` and `ack_wait` need `jetstream=STREAM`",
                    ));
                }
                None
            }
            Some(stream) => Some(JetStreamSettings {
                subjects: parse_subjects(options.take("jetstream_subjects"))?,
                ack_wait: options
                    .take_duration("ack_wait")?
                    .unwrap_or(DEFAULT_ACK_WAIT),
                replicas: match options.take_parsed::<usize>("jetstream_replicas")? {
                    None => 1,
                    Some(n @ 1..=5) => n,
                    Some(n) => {
                        return Err(Error::config(format!(
                            "option `jetstream_replicas`: {n} is not between 1 and 5"
                        )))
                    }
                },
                stream: validate_stream_name(stream)?,
            }),
        };
        let tls = read_tls(&mut options)?;
        let settings = NatsSettings {
            servers,
            tls,
            name: options.take("name"),
            user_password,
            token: options.take("token"),
            creds: options.take("creds").map(PathBuf::from),
            connect_timeout: options
                .take_duration("connect_timeout")?
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            max_reconnects: options.take_parsed("max_reconnects")?,
            reconnect_delay_max: options
                .take_duration("reconnect_delay_max")?
                .unwrap_or(DEFAULT_RECONNECT_DELAY_MAX),
            publish_timeout: options
                .take_duration("publish_timeout")?
                .unwrap_or(DEFAULT_PUBLISH_TIMEOUT),
            subscription_capacity: match options.take_parsed::<usize>("subscription_capacity")? {
                Some(0) => {
                    return Err(Error::config(
                        "option `subscription_capacity` must be at least 1",
                    ))
                }
                n => n.unwrap_or(DEFAULT_SUBSCRIPTION_CAPACITY),
            },
            pending_bytes: options
                .take_parsed::<usize>("pending_bytes")?
                .unwrap_or(DEFAULT_PENDING_BYTES),
            jetstream,
        };
        options.finish("nats://", OPTIONS)?;
        Ok(settings)
    }
}

/// `tls`, `tls_ca`, `tls_cert` and `tls_key`: TLS is on when `tls=true` or a file is named.
fn read_tls(options: &mut switchboard_core::options::Options) -> Result<Option<TlsFiles>> {
    let required = options.take_parsed::<bool>("tls")?;
    let ca = options.take("tls_ca").map(PathBuf::from);
    let client =
        match (options.take("tls_cert"), options.take("tls_key")) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            _ => return Err(Error::config(
                "options `tls_cert` and `tls_key` go together: the client certificate and its key",
            )),
        };
    let named = ca.is_some() || client.is_some();
    match required {
        Some(false) if named => Err(Error::config(
            "option `tls=false` contradicts `tls_ca`/`tls_cert`: leave out `tls`, or the files",
        )),
        Some(true) => Ok(Some(TlsFiles { ca, client })),
        _ if named => Ok(Some(TlsFiles { ca, client })),
        _ => Ok(None),
    }
}

fn parse_subjects(raw: Option<String>) -> Result<Vec<String>> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(|pattern| {
            subject::validate_pattern(pattern)
                .map_err(|e| Error::config(format!("option `jetstream_subjects`: {e}")))?;
            Ok(pattern.to_owned())
        })
        .collect()
}

fn validate_stream_name(name: String) -> Result<String> {
    subject::validate_group(&name).map_err(|_| {
        Error::config(format!(
            "option `jetstream`: stream name `{name}` must be letters, digits, `-` or `_`"
        ))
    })?;
    Ok(name)
}

fn percent_decode(text: &str) -> Result<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| Error::config("URL credentials are not valid UTF-8 after percent-decoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> Result<NatsSettings> {
        NatsSettings::from_endpoint(Endpoint::parse(url)?)
    }

    #[test]
    fn reads_every_option() {
        let s = settings(
            "nats://alice:p%40ss@a:4222,b?name=orders&connect_timeout=2s&max_reconnects=3\
             &reconnect_delay_max=500ms&publish_timeout=1s&jetstream=ORDERS\
             &jetstream_subjects=orders.>,payments.*&ack_wait=10s&pending_bytes=1024",
        )
        .unwrap();
        assert_eq!(s.pending_bytes, 1024);
        assert_eq!(s.servers, ["a:4222", "b:4222"]);
        assert_eq!(s.user_password, Some(("alice".into(), "p@ss".into())));
        assert_eq!(s.name.as_deref(), Some("orders"));
        assert_eq!(s.connect_timeout, Duration::from_secs(2));
        assert_eq!(s.max_reconnects, Some(3));
        assert_eq!(s.publish_timeout, Duration::from_secs(1));
        let js = s.jetstream.unwrap();
        assert_eq!(js.stream, "ORDERS");
        assert_eq!(js.subjects, ["orders.>", "payments.*"]);
        assert_eq!(js.ack_wait, Duration::from_secs(10));
        assert!(s.tls.is_none());
        let tls = settings("nats://a?tls_ca=/ca.pem&tls_cert=/c.pem&tls_key=/k.pem")
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(tls.ca, Some(PathBuf::from("/ca.pem")));
        assert!(tls.client.is_some());
        assert!(settings("nats://a?tls=true").unwrap().tls.is_some());
    }

    #[test]
    fn rejects_bad_options() {
        for (url, expected) in [
            ("nats://", "at least one server"),
            ("nats://a:4222/path", "no path"),
            ("nats://a?jetstream=bad.name", "stream name"),
            (
                "nats://a?jetstream=S&jetstream_subjects=a..b",
                "jetstream_subjects",
            ),
            ("nats://a?ack_wait=5s", "need `jetstream=STREAM`"),
            (
                "nats://a?jetstream=S&jetstream_replicas=7",
                "between 1 and 5",
            ),
            ("nats://a?connect_timeout=fast", "connect_timeout"),
            ("nats://a?max_reconnects=-1", "max_reconnects"),
            ("nats://a?pending_bytes=64MiB", "pending_bytes"),
            ("nats://a?colour=blue", "unknown option `colour`"),
            ("nats://a?tls_cert=c.pem", "go together"),
            ("nats://a?tls=false&tls_ca=ca.pem", "contradicts"),
            ("nats://a?tls=maybe", "tls"),
        ] {
            let err = settings(url).unwrap_err();
            assert!(err.to_string().contains(expected), "{url}: {err}");
        }
    }
}
