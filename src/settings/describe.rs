//! A settings file's AsyncAPI document, without connecting to anything
//! (`switchboard asyncapi`; see [`crate::asyncapi`]).

use serde_json::Value;

use super::{Settings, Style, DEFAULT_TRANSPORT};
use crate::asyncapi::{self, Channel, Schemas, Side};
use crate::error::Result;

impl Settings {
    /// The AsyncAPI 3.0 document of these settings' route table, from a
    /// caller's side, as [`Bus::asyncapi`](crate::Bus::asyncapi) gives for the
    /// connected bus — without connecting: each transport's backend comes
    /// from its URL's scheme.
    ///
    /// ```
    /// let settings = switchboard::Settings::from_toml(r#"
    ///     [transports.default]
    ///     url = "nats://127.0.0.1:4222"
    ///     [[routes]]
    ///     subjects = "orders.*"
    ///     style = "sync"
    /// "#)?;
    /// let document = settings.asyncapi("shop")?;
    /// assert_eq!(document["servers"]["default"]["protocol"], "nats");
    /// assert!(document["operations"]["orders._"]["reply"].is_object());
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn asyncapi(&self, title: &str) -> Result<Value> {
        let table = self.route_table()?;
        let mut urls = std::collections::BTreeMap::new();
        for (name, transport) in &self.transports {
            let url = transport.to_url()?;
            urls.insert(name.as_str(), crate::endpoint::redact(&url));
        }
        let backend_of = |transport: &str| -> &'static str {
            let scheme = urls
                .get(transport)
                .and_then(|url| url.split_once("://"))
                .map_or("memory", |(scheme, _)| scheme);
            match scheme {
                "http" | "https" => "http",
                "grpc" | "grpcs" => "grpc",
                "nats" | "tls" => "nats",
                "kafka" => "kafka",
                _ => "memory",
            }
        };
        let channels: Vec<Channel<'_>> = table
            .rules()
            .iter()
            .map(|rule| {
                let decision = table.decide(&rule.pattern);
                Channel {
                    subject: &rule.pattern,
                    sync: decision.style == Style::Sync,
                    transport: decision.transport,
                    backend: backend_of(decision.transport),
                    content_type: decision.codec.content_type(),
                    payload: None,
                    reply: None,
                }
            })
            .collect();
        let servers = asyncapi::servers_of(&channels, |name| {
            urls.get(name)
                .or_else(|| urls.get(DEFAULT_TRANSPORT))
                .map(String::as_str)
        });
        Ok(asyncapi::document(
            title,
            Side::Sender,
            &servers,
            &channels,
            &Schemas::default(),
        ))
    }
}
