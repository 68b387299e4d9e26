//! What a backend can do, declared once so callers and the conformance suite can ask.

/// Whether a backend supports a feature, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// The backend honours this feature.
    Yes,
    /// The backend cannot honour this feature; the reason is shown to users and in skipped tests.
    No(&'static str),
}

impl Support {
    /// Whether the feature is supported.
    pub fn is_supported(self) -> bool {
        matches!(self, Support::Yes)
    }

    /// The reason it is not supported, if it is not.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Support::Yes => None,
            Support::No(reason) => Some(reason),
        }
    }
}

/// The capabilities of one backend connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The backend's name (`memory`, `http`, `nats`, `kafka`).
    pub backend: &'static str,
    /// Request/reply.
    pub request_reply: Support,
    /// Whether a request to a subject nobody serves fails at once with
    /// [`Error::NoResponders`](crate::Error::NoResponders) rather than timing out.
    pub no_responders: Support,
    /// Wildcard subscriptions (`orders.*`, `orders.>`).
    pub wildcards: Support,
    /// Queue groups: each message to exactly one member of a group.
    pub queue_groups: Support,
    /// Headers carried end to end.
    pub headers: Support,
    /// Messages from one publisher to one subject arrive in publish order.
    pub ordering: Support,
    /// `ack`/`nack` on received messages lead to redelivery of what was not acknowledged.
    pub acknowledgements: Support,
    /// An event for a queue group whose members are all away reaches the
    /// group when one returns: the backend keeps it (Kafka, JetStream), or
    /// tells the publisher that nobody took it, so an
    /// outbox holds it (memory, HTTP, gRPC).
    pub absent_groups: Support,
    /// The largest payload accepted, in bytes.
    pub max_payload: usize,
}

impl Capabilities {
    /// Capabilities with everything supported; adapters override what they lack.
    pub fn full(backend: &'static str, max_payload: usize) -> Self {
        Capabilities {
            backend,
            request_reply: Support::Yes,
            no_responders: Support::Yes,
            wildcards: Support::Yes,
            queue_groups: Support::Yes,
            headers: Support::Yes,
            ordering: Support::Yes,
            acknowledgements: Support::Yes,
            absent_groups: Support::Yes,
            max_payload,
        }
    }
}
