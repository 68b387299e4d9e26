//! CloudEvents 1.0 in binary content mode: the event's attributes travel as
//! `ce-*` headers (`ce_*` on Kafka, as its protocol binding says) and the
//! payload is the event's data, so a CloudEvents SDK in any language reads
//! what a switchboard service publishes, and a service reads what such an
//! SDK sends.
//!
//! Turned on with `cloudevents = true` on a route or a transport in the
//! settings. Each event published there carries (unless the message sets
//! its own):
//!
//! | header | value |
//! |---|---|
//! | `ce-specversion` | `1.0` |
//! | `ce-id` | the message id (`sb-message-id`) if it has one, else a new random id |
//! | `ce-source` | `[cloudevents] source`, else `/SERVICE` for settings loaded for a service, else `/switchboard` |
//! | `ce-type` | the subject |
//! | `ce-time` | when it was published (RFC 3339, UTC) |
//! | `content-type` | the payload's media type (`application/json` for JSON) |
//!
//! A received event's attributes are read with the [`CloudEvent`] extractor.
//! On a route with `cloudevents = true`, an event that carries `ce-*`
//! headers but is not a valid CloudEvent (no `ce-id`, an unknown
//! `ce-specversion`, …) is dead-lettered at once with the reason.
//!
//! ```
//! use switchboard::cloudevents::CloudEvent;
//! use switchboard::{Service, Settings};
//!
//! async fn audit(_: serde_json::Value, event: CloudEvent) -> Result<(), String> {
//!     assert_eq!(event.ty, "audit.login");
//!     assert_eq!(event.source, "/switchboard");
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> switchboard::Result<()> {
//! let bus = Settings::from_toml(r#"
//!     [transports.default]
//!     url = "memory://cloudevents-doc"
//!
//!     [[routes]]
//!     subjects = "audit.*"
//!     style = "async"
//!     cloudevents = true
//! "#)?.connect().await?;
//! let mut raw = bus.subscribe("audit.login").await?;
//! let running = Service::new("audit", bus.clone()).on("audit.login", audit).start().await?;
//! bus.send::<_, ()>("audit.login", &"ada").await?;
//! let incoming = raw.next().await.unwrap();
//! assert_eq!(incoming.headers().get("ce-specversion"), Some("1.0"));
//! assert_eq!(incoming.headers().get("ce-type"), Some("audit.login"));
//! running.shutdown().await;
//! # Ok(()) }
//! ```

use std::time::SystemTime;

use crate::handler::{Context, FromContext, Rejection};
use crate::headers::Headers;
use crate::wire;

/// The prefix of CloudEvents attribute headers (HTTP, NATS, gRPC, memory).
pub const PREFIX: &str = "ce-";
/// `ce-specversion`.
pub const SPECVERSION: &str = "ce-specversion";
/// `ce-id`.
pub const ID: &str = "ce-id";
/// `ce-source`.
pub const SOURCE: &str = "ce-source";
/// `ce-type`.
pub const TYPE: &str = "ce-type";
/// `ce-time`.
pub const TIME: &str = "ce-time";
/// `ce-subject`.
pub const SUBJECT: &str = "ce-subject";
/// The only specification version this crate writes and reads.
pub const SPEC_VERSION: &str = "1.0";
/// `ce-source` when neither the settings nor a service name give one.
pub const DEFAULT_SOURCE: &str = "/switchboard";

/// Adds the CloudEvents attributes `headers` does not already carry, for an
/// event published to `subject` by `source`.
pub(crate) fn stamp(headers: &mut Headers, subject: &str, source: &str) {
    if !headers.contains(SPECVERSION) {
        headers.insert(SPECVERSION, SPEC_VERSION);
    }
    if !headers.contains(ID) {
        let id = match headers.get(wire::MESSAGE_ID) {
            Some(id) => id.to_owned(),
            None => format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        };
        headers.insert(ID, id);
    }
    if !headers.contains(SOURCE) {
        headers.insert(SOURCE, source);
    }
    if !headers.contains(TYPE) {
        headers.insert(TYPE, subject);
    }
    if !headers.contains(TIME) {
        headers.insert(
            TIME,
            humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        );
    }
    if !headers.contains(wire::CONTENT_TYPE) {
        // JSON goes without `content-type` elsewhere; a CloudEvent names it.
        headers.insert(wire::CONTENT_TYPE, wire::JSON);
    }
}

/// Whether `headers` carry any CloudEvents attribute.
pub(crate) fn carries_attributes(headers: &Headers) -> bool {
    headers.iter().any(|(name, _)| {
        name.len() > PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
    })
}

/// A received CloudEvent's context attributes, read from its `ce-*` headers.
///
/// As a handler argument it refuses (permanently: an event is dead-lettered
/// at once) a message that is not a CloudEvent 1.0, naming what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloudEvent {
    /// `ce-id`: unique per `source`.
    pub id: String,
    /// `ce-source`: who produced it (a URI reference).
    pub source: String,
    /// `ce-type`: what happened (switchboard writes the subject).
    pub ty: String,
    /// `ce-specversion`: always `1.0`.
    pub specversion: String,
    /// `ce-time`, if present (RFC 3339).
    pub time: Option<String>,
    /// `ce-subject`, if present.
    pub subject: Option<String>,
    /// `content-type` (the `datacontenttype` attribute), if present.
    pub datacontenttype: Option<String>,
}

impl CloudEvent {
    /// Reads the attributes from `headers`; the error says why they are not
    /// a CloudEvent 1.0.
    pub fn from_headers(headers: &Headers) -> Result<CloudEvent, String> {
        let required = |name: &str| {
            headers
                .get(name)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("not a CloudEvent: `{name}` is missing or empty"))
        };
        let specversion = required(SPECVERSION)?;
        if specversion != SPEC_VERSION {
            return Err(format!(
                "not a CloudEvent this service reads: `{SPECVERSION}` is {specversion:?}, not \"{SPEC_VERSION}\""
            ));
        }
        let time = headers.get(TIME).map(str::to_owned);
        if let Some(time) = &time {
            humantime::parse_rfc3339_weak(time).map_err(|e| {
                format!("not a CloudEvent: `{TIME}` {time:?} is not RFC 3339 ({e})")
            })?;
        }
        Ok(CloudEvent {
            id: required(ID)?,
            source: required(SOURCE)?,
            ty: required(TYPE)?,
            specversion,
            time,
            subject: headers.get(SUBJECT).map(str::to_owned),
            datacontenttype: headers.get(wire::CONTENT_TYPE).map(str::to_owned),
        })
    }
}

impl FromContext for CloudEvent {
    fn from_context(context: &Context) -> Result<Self, Rejection> {
        CloudEvent::from_headers(context.headers())
            .map_err(|reason| Rejection::new(reason).with_code(MALFORMED).permanent())
    }
}

/// The code of a refusal for a malformed CloudEvent.
pub const MALFORMED: &str = "malformed_cloudevent";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_event_reads_back() {
        let mut headers = Headers::new();
        headers.insert(wire::MESSAGE_ID, "m-1");
        stamp(&mut headers, "orders.placed", "/orders");
        let event = CloudEvent::from_headers(&headers).unwrap();
        assert_eq!(event.id, "m-1");
        assert_eq!(event.source, "/orders");
        assert_eq!(event.ty, "orders.placed");
        assert_eq!(event.datacontenttype.as_deref(), Some(wire::JSON));
        assert!(carries_attributes(&headers));
    }

    #[test]
    fn a_sender_own_attributes_are_kept() {
        let mut headers = Headers::new();
        headers.insert(TYPE, "com.example.placed");
        stamp(&mut headers, "orders.placed", "/orders");
        assert_eq!(headers.get(TYPE), Some("com.example.placed"));
    }

    #[test]
    fn malformed_events_say_why() {
        let mut headers = Headers::new();
        headers.insert(SPECVERSION, "1.0");
        headers.insert(SOURCE, "/x");
        headers.insert(TYPE, "t");
        let err = CloudEvent::from_headers(&headers).unwrap_err();
        assert!(err.contains("ce-id"), "{err}");
        headers.insert(ID, "1");
        headers.insert(SPECVERSION, "0.3");
        let err = CloudEvent::from_headers(&headers).unwrap_err();
        assert!(err.contains("0.3"), "{err}");
        headers.insert(SPECVERSION, "1.0");
        headers.insert(TIME, "yesterday");
        let err = CloudEvent::from_headers(&headers).unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
        assert!(!carries_attributes(&Headers::new()));
    }
}
