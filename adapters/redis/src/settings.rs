//! `redis://` and `rediss://` URL options, read strictly: every option is documented in `docs.md`.

use std::path::PathBuf;
use std::time::Duration;

use switchboard_core::endpoint::Endpoint;
use switchboard_core::error::{Error, Result};

/// The options `redis://` URLs accept (besides the core `request_timeout`).
pub const OPTIONS: &[&str] = &[
    "prefix",
    "maxlen",
    "claim_idle",
    "group_start",
    "prefetch",
    "connect_timeout",
    "command_timeout",
    "max_payload",
    "tls_ca",
];

/// Default first part of every key and channel name.
pub const DEFAULT_PREFIX: &str = "switchboard";
/// Default time an event stays pending with a consumer that took it and
/// neither acknowledged nor returned it, before another member of its
/// group claims it (`XAUTOCLAIM`).
pub const DEFAULT_CLAIM_IDLE: Duration = Duration::from_secs(30);
/// Where a consumer group new to a stream starts reading it (`group_start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupStart {
    /// At the stream's first entry: nothing published before the group's
    /// first member subscribed is missed (the default, as Kafka's
    /// `offset_reset=earliest`).
    #[default]
    Earliest,
    /// At the moment its first member subscribed.
    Latest,
}

/// Default entries one read takes, and deliveries a subscription buffers.
pub const DEFAULT_PREFETCH: usize = 256;
/// Default time allowed to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on one command (a publish, an acknowledgement).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest payload sent (Redis's own bound on one value,
/// `proto-max-bulk-len`, is 512 MiB by default).
pub const DEFAULT_MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Settings of a Redis connection.
#[derive(Clone)]
pub struct RedisSettings {
    /// The URL the client connects with: credentials and database, no options.
    pub(crate) uri: String,
    /// The URL as shown in errors (password hidden).
    pub shown_url: String,
    /// Whether the connection uses TLS (`rediss://`).
    pub tls: bool,
    /// PEM file of the CA that signed the server's certificate (`tls_ca`);
    /// without it the system's trusted roots are used.
    pub tls_ca: Option<PathBuf>,
    /// First part of every key and channel (`prefix`): streams are
    /// `PREFIX:SUBJECT`, requests go to the channel `PREFIX:req:SUBJECT`.
    pub prefix: String,
    /// Streams are trimmed to about this many entries on every publish
    /// (`maxlen`, `XADD MAXLEN ~`); unbounded without it.
    pub maxlen: Option<usize>,
    /// An event pending this long with a consumer is claimed by another
    /// member of the group (`claim_idle`).
    pub claim_idle: Duration,
    /// Where a consumer group new to a stream starts (`group_start`).
    pub group_start: GroupStart,
    /// Entries one read takes, and deliveries a subscription buffers (`prefetch`).
    pub prefetch: usize,
    /// Time allowed for a connection (`connect_timeout`).
    pub connect_timeout: Duration,
    /// Bound on one command (`command_timeout`).
    pub command_timeout: Duration,
    /// Largest payload sent (`max_payload`).
    pub max_payload: usize,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.shown_url)
            .field("prefix", &self.prefix)
            .field("maxlen", &self.maxlen)
            .field("claim_idle", &self.claim_idle)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

impl RedisSettings {
    /// The stream events on `subject` are added to.
    pub fn stream(&self, subject: &str) -> String {
        format!("{}:{subject}", self.prefix)
    }

    /// The channel requests on `subject` are published to.
    pub fn request_channel(&self, subject: &str) -> String {
        format!("{}:req:{subject}", self.prefix)
    }

    /// Where reply channels start: a responder answers only there.
    pub(crate) fn reply_prefix(&self) -> String {
        format!("{}:reply:", self.prefix)
    }

    /// The set of every subject published to, which wildcard subscribers read.
    pub(crate) fn subjects_key(&self) -> String {
        format!("{}:subjects", self.prefix)
    }

    /// The channel a subject published for the first time is announced on.
    pub(crate) fn new_subject_channel(&self) -> String {
        format!("{}:new-subject", self.prefix)
    }

    /// Reads a `redis://` or `rediss://` endpoint.
    pub fn from_endpoint(endpoint: Endpoint) -> Result<Self> {
        let Endpoint {
            mut url,
            hosts,
            mut options,
        } = endpoint;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(Error::config(format!(
                    "the Redis backend serves redis:// and rediss://, not {other}://"
                )))
            }
        };
        match hosts.len() {
            1 => {}
            0 => {
                return Err(Error::config(
                    "redis URL needs a server: redis://[USER:PASSWORD@]HOST[:PORT][/DB]",
                ))
            }
            _ => {
                return Err(Error::config(
                    "redis URL takes one server; Redis Cluster is not supported by this backend",
                ))
            }
        }
        let path = url.path().trim_start_matches('/');
        if !path.is_empty() && path.parse::<u16>().is_err() {
            return Err(Error::config(format!(
                "redis URL path `/{path}` is not a database number (redis://HOST:PORT/0)"
            )));
        }
        let prefix = options
            .take("prefix")
            .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        if prefix.is_empty()
            || prefix.len() > 200
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::config(format!(
                "option `prefix`: `{prefix}` is not a key prefix switchboard uses (1 to 200 letters, digits, `-_.`)"
            )));
        }
        let maxlen = options.take_parsed::<usize>("maxlen")?;
        if maxlen == Some(0) {
            return Err(Error::config(
                "option `maxlen`: at least 1 (leave it out for streams without a bound)",
            ));
        }
        let claim_idle = options
            .take_duration("claim_idle")?
            .unwrap_or(DEFAULT_CLAIM_IDLE);
        if claim_idle < Duration::from_millis(10) {
            return Err(Error::config(
                "option `claim_idle`: at least 10ms (a shorter time takes events from members still handling them)",
            ));
        }
        let group_start = match options.take("group_start").as_deref() {
            None | Some("earliest") => GroupStart::Earliest,
            Some("latest") => GroupStart::Latest,
            Some(other) => {
                return Err(Error::config(format!(
                    "option `group_start`: `{other}` is neither `earliest` nor `latest`"
                )))
            }
        };
        let prefetch = options
            .take_parsed::<usize>("prefetch")?
            .unwrap_or(DEFAULT_PREFETCH);
        if prefetch == 0 || prefetch > 100_000 {
            return Err(Error::config("option `prefetch`: between 1 and 100000"));
        }
        let connect_timeout = options
            .take_duration("connect_timeout")?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let command_timeout = options
            .take_duration("command_timeout")?
            .unwrap_or(DEFAULT_COMMAND_TIMEOUT);
        let max_payload = options
            .take_parsed::<usize>("max_payload")?
            .unwrap_or(DEFAULT_MAX_PAYLOAD);
        let tls_ca = options.take("tls_ca").map(PathBuf::from);
        if tls_ca.is_some() && !tls {
            return Err(Error::config(
                "option `tls_ca` needs rediss:// (TLS); redis:// is plain TCP",
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
        options.finish("redis", OPTIONS)?;
        url.set_query(None);
        url.set_fragment(None);
        let shown_url = switchboard_core::endpoint::redact(url.as_str());
        Ok(RedisSettings {
            uri: url.to_string(),
            shown_url,
            tls,
            tls_ca,
            prefix,
            maxlen,
            claim_idle,
            group_start,
            prefetch,
            connect_timeout,
            command_timeout,
            max_payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> Result<RedisSettings> {
        RedisSettings::from_endpoint(Endpoint::parse(url)?)
    }

    #[test]
    fn defaults_and_options() {
        let plain = settings("redis://user:secret@127.0.0.1:6379/2").unwrap();
        assert_eq!(plain.prefix, DEFAULT_PREFIX);
        assert_eq!(plain.uri, "redis://user:secret@127.0.0.1:6379/2");
        assert!(!plain.shown_url.contains("secret"), "{}", plain.shown_url);
        assert_eq!(plain.stream("orders.placed"), "switchboard:orders.placed");
        assert_eq!(
            plain.request_channel("orders.place"),
            "switchboard:req:orders.place"
        );
        let tuned = settings("redis://127.0.0.1?prefix=shop&maxlen=1000&claim_idle=5s&prefetch=16")
            .unwrap();
        assert_eq!(tuned.prefix, "shop");
        assert_eq!(tuned.maxlen, Some(1000));
        assert_eq!(tuned.claim_idle, Duration::from_secs(5));
        assert_eq!(tuned.prefetch, 16);
        assert_eq!(tuned.group_start, GroupStart::Earliest);
        let latest = settings("redis://127.0.0.1?group_start=latest").unwrap();
        assert_eq!(latest.group_start, GroupStart::Latest);
        assert_eq!(tuned.uri, "redis://127.0.0.1");
    }

    #[test]
    fn bad_options_are_refused_with_a_reason() {
        for (url, expected) in [
            ("redis://127.0.0.1?prefech=5", "prefetch"),
            ("redis://127.0.0.1?prefetch=0", "prefetch"),
            ("redis://127.0.0.1?maxlen=0", "maxlen"),
            ("redis://127.0.0.1?prefix=a%20b", "prefix"),
            ("redis://127.0.0.1?claim_idle=1ms", "claim_idle"),
            ("redis://127.0.0.1?group_start=now", "group_start"),
            ("redis://127.0.0.1/orders", "database number"),
            ("redis://a:1,b:2", "one server"),
            ("redis://127.0.0.1?tls_ca=/nonexistent.pem", "rediss"),
            ("rediss://127.0.0.1?tls_ca=/nonexistent.pem", "cannot read"),
        ] {
            let err = settings(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }
}
