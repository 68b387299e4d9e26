//! One `[transports.NAME]` table: a backend URL with its timeout and options.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bus::Bus;
use crate::error::{Error, Result};

/// The URL used when none is configured: the in-process backend.
pub const DEFAULT_URL: &str = "memory://";

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
    pub fn to_url(&self) -> Result<String> {
        let mut url = url::Url::parse(&self.url).map_err(|e| {
            Error::config(format!(
                "key `url`: malformed URL `{}`: {e}",
                crate::connect::redact(&self.url)
            ))
        })?;
        if let Some(timeout) = &self.request_timeout {
            crate::options::parse_duration("request_timeout", timeout)?;
        }
        let extra = self
            .request_timeout
            .iter()
            .map(|t| ("request_timeout", t.as_str()))
            .chain(self.options.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut any = false;
        {
            let mut query = url.query_pairs_mut();
            for (key, value) in extra {
                query.append_pair(key, value);
                any = true;
            }
        }
        if !any && url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url.to_string())
    }

    /// The default request timeout, if one is configured.
    pub fn request_timeout(&self) -> Result<Option<Duration>> {
        self.request_timeout
            .as_deref()
            .map(|t| crate::options::parse_duration("request_timeout", t))
            .transpose()
    }

    /// Connects to the configured backend.
    pub async fn connect(&self) -> Result<Bus> {
        crate::connect(&self.to_url()?).await
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
