//! The route table: which style, transport and timeout a subject gets. First match wins.

use std::time::Duration;

use crate::codec::Encoding;
use crate::error::Result;
use crate::settings::Style;
use crate::subject;

/// What the table decides for one subject (borrowed from the table: deciding
/// happens on every call, so it allocates nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDecision<'a> {
    /// Request/reply or publish.
    pub style: Style,
    /// The name of the transport to use.
    pub transport: &'a str,
    /// The request timeout, when the route sets one.
    pub timeout: Option<Duration>,
    /// What an event that reaches no subscriber does.
    pub on_no_subscriber: NoSubscriber,
    /// How long a handled event's message id is remembered, so a second
    /// delivery of it is skipped; `None`: no deduplication.
    pub dedup: Option<Duration>,
    /// A sync send that cannot reach a responder goes out as an event instead.
    pub fallback_async: bool,
    /// How `send` encodes payloads.
    pub codec: Encoding,
    /// Whether events carry CloudEvents attributes, when the route says
    /// (`None`: as the transport says).
    pub cloudevents: Option<bool>,
    /// The pattern of the rule that decided; `None` when no rule matched.
    pub rule: Option<&'a str>,
}

/// What an event that reaches no subscriber does (`on_no_subscriber` on a
/// `[[routes]]` entry), on backends that can tell (memory, HTTP, gRPC; core
/// NATS cannot, and Kafka and JetStream keep events for their consumers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoSubscriber {
    /// Accepted as usual, and counted (`switchboard_unrouted_total`), logged
    /// once per subject per 10 s, and shown in [`Bus::health`](crate::Bus::health).
    #[default]
    Count,
    /// Counted and logged as with `count`, and the send or publish fails with
    /// [`Error::NoResponders`](crate::Error::NoResponders), so the caller can act.
    /// With an outbox the send is held instead until a subscriber takes it
    /// (or `max_age` dead-letters it), so this applies only without one.
    Error,
}

/// One row: a subject pattern and what matching subjects get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// The subject pattern (`orders.*`, `events.>`, or a plain subject).
    pub pattern: String,
    /// The style for matching subjects, or the table's default.
    pub style: Option<Style>,
    /// The transport for matching subjects, or the table's default.
    pub transport: Option<String>,
    /// The request timeout for matching subjects, or the transport's default.
    pub timeout: Option<Duration>,
    /// What an event to a matching subject that reaches no subscriber does.
    pub on_no_subscriber: NoSubscriber,
    /// Services handling matching subjects skip an event whose message id
    /// they handled within this window (`dedup = "10m"`; needs an outbox to
    /// keep the ids, see [`crate::outbox`]).
    pub dedup: Option<Duration>,
    /// Matching subjects are queries: their callers need the answer, so they
    /// are always request/reply, whatever `style` the table's default or a
    /// global flip (`SWITCHBOARD_STYLE=async`) gives.
    pub query: bool,
    /// `Some(Style::Async)` (`fallback = "async"`): a sync `send` that cannot
    /// reach a responder (no responders, cannot connect, circuit open —
    /// never once the handler may have run) publishes the command as an
    /// event instead and returns [`Sent::Deferred`](crate::Sent::Deferred).
    pub fallback: Option<Style>,
    /// How [`Bus::send`](crate::Bus::send) encodes payloads on matching
    /// subjects (`codec = "msgpack"`); receivers decode by `content-type`.
    pub codec: Encoding,
    /// Events on matching subjects carry CloudEvents attributes
    /// (`cloudevents = true`, see [`crate::cloudevents`]); `None`: as the
    /// transport's `cloudevents` says.
    pub cloudevents: Option<bool>,
}

impl RouteRule {
    /// A rule for `pattern` that decides nothing yet: the table's style and
    /// transport, the transport's timeout, `on_no_subscriber = "count"`, no
    /// dedup, not a query.
    pub fn new(pattern: impl Into<String>) -> Self {
        RouteRule {
            pattern: pattern.into(),
            style: None,
            transport: None,
            timeout: None,
            on_no_subscriber: NoSubscriber::Count,
            dedup: None,
            query: false,
            fallback: None,
            codec: Encoding::Json,
            cloudevents: None,
        }
    }
}

/// An ordered list of [`RouteRule`]s with defaults for subjects no rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    rules: Vec<RouteRule>,
    default_style: Style,
    default_transport: String,
}

/// The name of the transport used when no route names one.
pub const DEFAULT_TRANSPORT: &str = "default";

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable::new(Style::Sync)
    }
}

impl RouteTable {
    /// An empty table: every subject gets `default_style` on the `default` transport.
    pub fn new(default_style: Style) -> Self {
        RouteTable {
            rules: Vec::new(),
            default_style,
            default_transport: DEFAULT_TRANSPORT.to_owned(),
        }
    }

    /// Appends a rule; fails if its pattern is not a valid subject pattern,
    /// or it is a query with `style` async.
    pub fn push(&mut self, rule: RouteRule) -> Result<()> {
        subject::validate_pattern(&rule.pattern)?;
        if rule.query && rule.style == Some(Style::Async) {
            return Err(crate::error::Error::config(format!(
                "`{}` is a query (its callers need the answer), so it cannot be async; drop `style` or `query`",
                rule.pattern
            )));
        }
        match (rule.fallback, rule.style, rule.query) {
            (Some(Style::Sync), ..) => {
                return Err(crate::error::Error::config(format!(
                    "`{}`: `fallback` can only be \"async\"",
                    rule.pattern
                )))
            }
            (Some(Style::Async), _, true) => {
                return Err(crate::error::Error::config(format!(
                "`{}` is a query (its callers need the answer), so it cannot fall back to async",
                rule.pattern
            )))
            }
            (Some(Style::Async), Some(Style::Async), _) => {
                return Err(crate::error::Error::config(format!(
                    "`{}` is already async; `fallback = \"async\"` is for sync routes",
                    rule.pattern
                )))
            }
            _ => {}
        }
        self.rules.push(rule);
        Ok(())
    }

    /// The style for subjects no rule gives one.
    pub fn default_style(&self) -> Style {
        self.default_style
    }

    /// The rules, in matching order.
    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    /// Every transport name the table refers to, the default first.
    pub fn transports(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.default_transport.as_str())
            .chain(self.rules.iter().filter_map(|r| r.transport.as_deref()))
    }

    /// The decision for a concrete subject, or for a subscription pattern: a
    /// pattern takes the first rule that covers every subject it can match.
    pub fn decide(&self, subject_or_pattern: &str) -> RouteDecision<'_> {
        let rule = self
            .rules
            .iter()
            .find(|rule| subject::covers(&rule.pattern, subject_or_pattern));
        RouteDecision {
            style: match rule {
                Some(rule) if rule.query => Style::Sync,
                _ => rule.and_then(|r| r.style).unwrap_or(self.default_style),
            },
            transport: rule
                .and_then(|r| r.transport.as_deref())
                .unwrap_or(&self.default_transport),
            timeout: rule.and_then(|r| r.timeout),
            on_no_subscriber: rule.map(|r| r.on_no_subscriber).unwrap_or_default(),
            dedup: rule.and_then(|r| r.dedup),
            fallback_async: rule.is_some_and(|r| r.fallback == Some(Style::Async)),
            codec: rule.map(|r| r.codec).unwrap_or_default(),
            cloudevents: rule.and_then(|r| r.cloudevents),
            rule: rule.map(|r| r.pattern.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, style: Option<Style>, transport: Option<&str>) -> RouteRule {
        RouteRule {
            style,
            transport: transport.map(Into::into),
            ..RouteRule::new(pattern)
        }
    }

    #[test]
    fn a_query_stays_sync_whatever_the_default_style() {
        let mut table = RouteTable::new(Style::Async);
        table
            .push(RouteRule {
                query: true,
                ..RouteRule::new("stats.*")
            })
            .unwrap();
        assert_eq!(table.decide("stats.count").style, Style::Sync);
        assert_eq!(table.decide("orders.place").style, Style::Async);
        let async_query = RouteRule {
            query: true,
            style: Some(Style::Async),
            ..RouteRule::new("stats.*")
        };
        let err = table.push(async_query).unwrap_err();
        assert!(err.to_string().contains("is a query"), "{err}");
    }

    #[test]
    fn first_matching_rule_wins_and_defaults_fill_gaps() {
        let mut table = RouteTable::new(Style::Sync);
        table
            .push(rule("orders.audit", Some(Style::Async), None))
            .unwrap();
        table.push(rule("orders.*", None, Some("http"))).unwrap();
        table
            .push(rule("events.>", Some(Style::Async), Some("kafka")))
            .unwrap();

        let audit = table.decide("orders.audit");
        assert_eq!((audit.style, audit.transport), (Style::Async, "default"));
        let place = table.decide("orders.place");
        assert_eq!((place.style, place.transport), (Style::Sync, "http"));
        let shipped = table.decide("events.orders.shipped");
        assert_eq!((shipped.style, shipped.transport), (Style::Async, "kafka"));
        let other = table.decide("payments.charge");
        assert_eq!((other.style, other.transport), (Style::Sync, "default"));
        // A subscription pattern only takes a rule that covers all of it.
        assert_eq!(table.decide("events.*").transport, "kafka");
        assert_eq!(table.decide("orders.>").transport, "default");
    }

    #[test]
    fn rejects_bad_patterns() {
        let mut table = RouteTable::default();
        assert!(table.push(rule("orders..x", None, None)).is_err());
    }
}
