//! What a bus tells generated documents about its routes (see [`crate::asyncapi`]).

use serde_json::Value;

use super::Bus;
use crate::asyncapi::{self, Channel, Schemas, Side};
use crate::settings::{Style, DEFAULT_TRANSPORT};

impl Bus {
    /// An AsyncAPI 3.0 document of this bus's route table, from a caller's
    /// side: each route's pattern is a channel on its transport, with a
    /// `send` operation, and a reply for a sync route. Payloads are not
    /// known here; a service's document ([`Service::asyncapi`](crate::Service::asyncapi))
    /// names its handlers' types. See [`crate::asyncapi`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> switchboard::Result<()> {
    /// let bus = switchboard::Settings::from_toml(r#"
    ///     [transports.default]
    ///     url = "memory://asyncapi-doc"
    ///     [[routes]]
    ///     subjects = "orders.place"
    ///     style = "async"
    /// "#)?.connect().await?;
    /// let document = bus.asyncapi("shop");
    /// assert_eq!(document["asyncapi"], "3.0.0");
    /// assert_eq!(document["operations"]["orders.place"]["action"], "send");
    /// assert!(document["operations"]["orders.place"].get("reply").is_none()); // an event
    /// # Ok(()) }
    /// ```
    pub fn asyncapi(&self, title: &str) -> Value {
        let channels: Vec<Channel<'_>> = self
            .inner
            .table
            .rules()
            .iter()
            .map(|rule| self.channel(&rule.pattern, None, None))
            .collect();
        let servers = asyncapi::servers_of(&channels, |name| self.transport_url(name));
        asyncapi::document(
            title,
            Side::Sender,
            &servers,
            &channels,
            &Schemas::default(),
        )
    }

    /// How `subject` is carried, for a document.
    pub(crate) fn channel<'a>(
        &'a self,
        subject: &'a str,
        payload: Option<&'a str>,
        reply: Option<&'a str>,
    ) -> Channel<'a> {
        let route = self.resolve(subject);
        let transport = if self.inner.table.rules().is_empty() {
            DEFAULT_TRANSPORT
        } else {
            self.inner.table.decide(subject).transport
        };
        Channel {
            subject,
            sync: route.style == Style::Sync,
            transport,
            backend: route.carrier.transport.capabilities().backend,
            content_type: route.codec.content_type(),
            payload,
            reply,
        }
    }

    /// The URL the transport `name` was connected with, password removed.
    pub(crate) fn transport_url(&self, name: &str) -> Option<&str> {
        self.inner.carriers.get(name)?.url.as_deref()
    }
}
