//! One `[transports.NAME]` table: a backend URL with its timeout and options.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The URL used when none is configured: the in-process backend.
pub const DEFAULT_URL: &str = "memory://";

/// The request timeout used when none is configured.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One transport of [`Settings`](crate::Settings): which backend and how.
///
/// ```
/// use switchboard::settings::TransportSettings;
///
/// let transport: TransportSettings = toml::from_str(
///     r#"url = "memory://"
///        request_timeout = "2s"
///        options = { buffer = "64" }"#,
/// ).unwrap();
/// assert_eq!(transport.to_url().unwrap(), "memory://?request_timeout=2s&buffer=64");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportSettings {
    /// The backend URL, such as `memory://` or `nats://127.0.0.1:4222`.
    #[serde(default = "default_url")]
    pub url: String,
    /// The default request timeout, as a human duration (`500ms`, `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<String>,
    /// Backend options, merged into the URL's query string.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// `true`: events published on this transport carry CloudEvents
    /// attributes as `ce-*` headers (see [`crate::cloudevents`]); a route's
    /// own `cloudevents` wins.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cloudevents: bool,
}

fn default_url() -> String {
    DEFAULT_URL.to_owned()
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            url: default_url(),
            request_timeout: None,
            options: BTreeMap::new(),
            cloudevents: false,
        }
    }
}

impl TransportSettings {
    /// A transport for `url` with no extra options.
    pub fn new(url: impl Into<String>) -> Self {
        TransportSettings {
            url: url.into(),
            ..TransportSettings::default()
        }
    }

    /// The URL with `request_timeout` and `options` merged into its query string.
    ///
    /// The URL is checked as [`connect`](crate::connect) reads it, so a
    /// cluster's host list (`nats://a:4222,b:4222`) is accepted here too.
    pub fn to_url(&self) -> Result<String> {
        crate::endpoint::Endpoint::parse(&self.url).map_err(|e| match e {
            Error::InvalidConfig { message } => Error::config(format!("key `url`: {message}")),
            other => other,
        })?;
        if let Some(timeout) = &self.request_timeout {
            crate::options::parse_duration("request_timeout", timeout)?;
        }
        let mut extra = url::form_urlencoded::Serializer::new(String::new());
        if let Some(timeout) = &self.request_timeout {
            extra.append_pair("request_timeout", timeout);
        }
        for (key, value) in &self.options {
            extra.append_pair(key, value);
        }
        let extra = extra.finish();
        // Appended as text: a host list is not a standard URL, so `url::Url` cannot edit it.
        let (base, fragment) = match self.url.split_once('#') {
            Some((base, fragment)) => (base, Some(fragment)),
            None => (self.url.as_str(), None),
        };
        let base = base.strip_suffix('?').unwrap_or(base);
        let mut url = base.to_owned();
        if !extra.is_empty() {
            url.push(if base.contains('?') { '&' } else { '?' });
            url.push_str(&extra);
        }
        if let Some(fragment) = fragment {
            url.push('#');
            url.push_str(fragment);
        }
        Ok(url)
    }

    /// The default request timeout, if one is configured.
    pub fn request_timeout(&self) -> Result<Option<Duration>> {
        self.request_timeout
            .as_deref()
            .map(|t| crate::options::parse_duration("request_timeout", t))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_options_into_url() {
        let mut config = TransportSettings::new("memory://local?buffer=8");
        config.request_timeout = Some("2s".into());
        config.options.insert("max_payload".into(), "1024".into());
        assert_eq!(
            config.to_url().unwrap(),
            "memory://local?buffer=8&request_timeout=2s&max_payload=1024"
        );
        assert_eq!(
            TransportSettings::new("memory://").to_url().unwrap(),
            "memory://"
        );
    }

    #[test]
    fn accepts_a_cluster_host_list_as_connect_does() {
        let mut config = TransportSettings::new("nats://10.0.0.1:4222,10.0.0.2:4222");
        config.request_timeout = Some("2s".into());
        assert_eq!(
            config.to_url().unwrap(),
            "nats://10.0.0.1:4222,10.0.0.2:4222?request_timeout=2s"
        );
        let listed = TransportSettings::new("kafka://a:9092,b:9092?replication=3");
        assert_eq!(
            listed.to_url().unwrap(),
            "kafka://a:9092,b:9092?replication=3"
        );
        let err = TransportSettings::new("nats://a:4222,:x")
            .to_url()
            .unwrap_err();
        assert!(
            err.to_string().contains("key `url`: malformed URL"),
            "{err}"
        );
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let err = serde_json::from_str::<TransportSettings>(r#"{"uri": "memory://"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `uri`"), "{err}");
        let mut config = TransportSettings::new("memory://");
        config.request_timeout = Some("fast".into());
        assert!(config
            .to_url()
            .unwrap_err()
            .to_string()
            .contains("request_timeout"));
    }
}
