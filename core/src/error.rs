//! The one error type every backend returns, and the kinds a caller matches on.

use std::time::Duration;

pub use crate::error_detail::{BoxError, DeliveryFailure, Origin};

/// Shorthand for `Result<T, switchboard::Error>`.
///
/// ```
/// fn parse_style(text: &str) -> switchboard::Result<switchboard::Style> {
///     text.parse()
/// }
/// assert!(parse_style("sync").is_ok());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in switchboard, on any backend.
///
/// Match on the variant (or on [`Error::kind`]) to decide what to do next: retry,
/// fail over, report a bad request, or give up. Messages are for people; the
/// variants and kinds are the stable contract.
///
/// `Debug` prints the same sentence as `Display` followed by its causes, so
/// an `Error` returned from `main` reads as a message, not a struct:
///
/// ```
/// let err = switchboard::Error::config("key `url`: malformed URL `nats//x`");
/// assert_eq!(format!("{err:?}"), "invalid configuration: key `url`: malformed URL `nats//x`");
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request got no reply, or a publish no acknowledgement, within its timeout.
    #[error("`{subject}` timed out after {timeout:?} (no reply or acknowledgement in time)")]
    Timeout {
        /// The subject the request was sent to.
        subject: String,
        /// How long the caller waited.
        timeout: Duration,
    },

    /// Nobody is subscribed to the subject of a request (only backends that can
    /// tell report this; see [`Capabilities::no_responders`](crate::transport::Capabilities)).
    #[error("no responders for `{subject}`")]
    NoResponders {
        /// The subject nobody serves.
        subject: String,
    },

    /// The responder's handler failed; `message` is the handler's own error
    /// text and `code` the machine-readable code it gave, if any (see
    /// `handler::Rejection`). `origin` names the
    /// service and subject whose handler refused first: across hops (a
    /// handler passing on a refusal it got with `?`) that is the one further
    /// down, not the one this caller called.
    #[error("{}", remote_text(subject, origin.as_deref(), code.as_deref(), message))]
    Remote {
        /// The subject of the failed request.
        subject: String,
        /// The handler's machine-readable error code, when it gave one.
        code: Option<String>,
        /// The error message the handler returned.
        message: String,
        /// Who refused, when the responder said (switchboard responders do).
        origin: Option<Box<Origin>>,
    },

    /// A payload could not be encoded or decoded, here or at the responder.
    #[error("codec error: {message}")]
    Codec {
        /// What could not be encoded or decoded, and why.
        message: String,
        /// The decoder's own error, when it happened in this process.
        #[source]
        source: Option<BoxError>,
    },

    /// The backend could not be reached or the connection could not be set up.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL that was tried, with any password removed.
        url: String,
        /// Why the connection failed.
        #[source]
        source: BoxError,
    },

    /// The transport has been closed; no new calls are accepted.
    #[error("transport is closed")]
    Closed,

    /// A subject, subscription pattern or queue group name is not valid.
    #[error("invalid subject `{subject}`: {reason}")]
    InvalidSubject {
        /// The rejected subject.
        subject: String,
        /// Which rule it broke.
        reason: String,
    },

    /// A header name or value is not valid, or a reserved header was set by hand.
    #[error("invalid header `{name}`: {reason}")]
    InvalidHeader {
        /// The rejected header name.
        name: String,
        /// Which rule it broke.
        reason: String,
    },

    /// A URL, option or configuration value is malformed or unknown.
    #[error("invalid configuration: {message}")]
    InvalidConfig {
        /// What is wrong, naming the key or part of the URL.
        message: String,
    },

    /// No backend is registered for the URL's scheme.
    #[error("unknown URL scheme `{scheme}`; known schemes: {known}")]
    UnknownScheme {
        /// The scheme that was asked for.
        scheme: String,
        /// The schemes switchboard knows, each with whether this build enables it.
        known: String,
    },

    /// The backend for this scheme exists but its Cargo feature is not enabled.
    #[error("scheme `{scheme}` needs the `{feature}` feature of switchboard, which this build does not enable (enabled: {enabled})")]
    FeatureDisabled {
        /// The scheme that was asked for.
        scheme: String,
        /// The Cargo feature that would enable it.
        feature: &'static str,
        /// The backend features compiled into this build.
        enabled: String,
    },

    /// A payload is larger than the backend accepts.
    #[error("{}", too_large(*size, *limit))]
    PayloadTooLarge {
        /// The size of the rejected payload in bytes (0 where the refusing side did not say).
        size: usize,
        /// The largest payload the backend accepts (0 where the refusing side did not say).
        limit: usize,
    },

    /// The backend cannot do what was asked (for example wildcard subscriptions).
    #[error("{backend} does not support {what}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// What it cannot do.
        what: String,
    },

    /// Some subscribers did not accept an event; every other subscriber did.
    #[error(
        "event on `{subject}` was not accepted by {}",
        describe_failures(failed)
    )]
    Undelivered {
        /// The subject of the event.
        subject: String,
        /// Who did not accept it, and why.
        failed: Vec<DeliveryFailure>,
    },

    /// The API was used in a way that cannot work, such as replying twice.
    #[error("{message}")]
    Usage {
        /// What was done wrong.
        message: String,
    },

    /// A circuit breaker is open for this destination after repeated failures;
    /// the call was not attempted. It is probed again after `retry_after`.
    #[error("circuit open for `{subject}` after repeated failures; retry after {retry_after:?}")]
    CircuitOpen {
        /// The destination whose circuit is open.
        subject: String,
        /// How long until the breaker lets a probe through.
        retry_after: Duration,
    },

    /// A concurrency limit is full and the call could not wait for a slot.
    #[error("too many calls in flight for `{subject}` (limit {limit})")]
    Overloaded {
        /// The subject of the refused call.
        subject: String,
        /// The configured limit.
        limit: usize,
    },

    /// The outbox already holds its `max_events` sends; this one was not
    /// written (kind [`ErrorKind::Overloaded`]).
    #[error("the outbox already holds {limit} sends (`max_events`); the send to `{subject}` was not accepted")]
    OutboxFull {
        /// The subject of the refused send.
        subject: String,
        /// The configured `max_events`.
        limit: u64,
    },

    /// Any other failure inside a backend's client library.
    #[error("{backend} error: {source}")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// The client library's error.
        #[source]
        source: BoxError,
    },
}

fn remote_text(
    subject: &str,
    origin: Option<&Origin>,
    code: Option<&str>,
    message: &str,
) -> String {
    let code = code.map(|c| format!(" (code `{c}`)")).unwrap_or_default();
    match origin {
        None => format!("handler for `{subject}` failed: {message}{code}"),
        Some(origin) if origin.subject == subject => {
            format!(
                "handler for `{subject}` at `{}` failed: {message}{code}",
                origin.service
            )
        }
        Some(origin) => format!(
            "handler for `{}` at `{}` failed: {message}{code}; passed on through `{subject}`",
            origin.subject, origin.service
        ),
    }
}

fn describe_failures(failed: &[DeliveryFailure]) -> String {
    failed
        .iter()
        .map(|f| format!("{} ({})", f.peer, f.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kind of an [`Error`], without its data: what tests and retry policies match on.
///
/// ```
/// use switchboard::{Error, ErrorKind};
///
/// let err = Error::config("bad");
/// assert_eq!(err.kind(), ErrorKind::InvalidConfig);
/// assert_eq!(err.kind().as_str(), "invalid_config");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::Timeout`].
    Timeout,
    /// See [`Error::NoResponders`].
    NoResponders,
    /// See [`Error::Remote`].
    Remote,
    /// See [`Error::Codec`].
    Codec,
    /// See [`Error::Connect`].
    Connect,
    /// See [`Error::Closed`].
    Closed,
    /// See [`Error::InvalidSubject`].
    InvalidSubject,
    /// See [`Error::InvalidHeader`].
    InvalidHeader,
    /// [`Error::InvalidConfig`], [`Error::UnknownScheme`] and [`Error::FeatureDisabled`].
    InvalidConfig,
    /// See [`Error::PayloadTooLarge`].
    PayloadTooLarge,
    /// See [`Error::Unsupported`].
    Unsupported,
    /// See [`Error::Undelivered`].
    Undelivered,
    /// See [`Error::Usage`].
    Usage,
    /// See [`Error::CircuitOpen`].
    CircuitOpen,
    /// See [`Error::Overloaded`] and [`Error::OutboxFull`].
    Overloaded,
    /// See [`Error::Backend`].
    Backend,
}

impl ErrorKind {
    /// A stable snake_case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::NoResponders => "no_responders",
            ErrorKind::Remote => "remote",
            ErrorKind::Codec => "codec",
            ErrorKind::Connect => "connect",
            ErrorKind::Closed => "closed",
            ErrorKind::InvalidSubject => "invalid_subject",
            ErrorKind::InvalidHeader => "invalid_header",
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Undelivered => "undelivered",
            ErrorKind::Usage => "usage",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Backend => "backend",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::NoResponders { .. } => ErrorKind::NoResponders,
            Error::Remote { .. } => ErrorKind::Remote,
            Error::Codec { .. } => ErrorKind::Codec,
            Error::Connect { .. } => ErrorKind::Connect,
            Error::Closed => ErrorKind::Closed,
            Error::InvalidSubject { .. } => ErrorKind::InvalidSubject,
            Error::InvalidHeader { .. } => ErrorKind::InvalidHeader,
            Error::InvalidConfig { .. }
            | Error::UnknownScheme { .. }
            | Error::FeatureDisabled { .. } => ErrorKind::InvalidConfig,
            Error::PayloadTooLarge { .. } => ErrorKind::PayloadTooLarge,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Undelivered { .. } => ErrorKind::Undelivered,
            Error::Usage { .. } => ErrorKind::Usage,
            Error::CircuitOpen { .. } => ErrorKind::CircuitOpen,
            Error::Overloaded { .. } | Error::OutboxFull { .. } => ErrorKind::Overloaded,
            Error::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Whether the same call may succeed if tried again unchanged.
    ///
    /// True for timeouts, missing responders, connection and backend failures;
    /// false for anything caused by the call itself (bad subject, payload,
    /// configuration) or by the responder's handler.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Timeout | ErrorKind::NoResponders | ErrorKind::Connect | ErrorKind::Backend
        )
    }

    /// Builds an [`Error::InvalidConfig`].
    pub fn config(message: impl Into<String>) -> Self {
        Error::InvalidConfig {
            message: message.into(),
        }
    }

    /// Builds an [`Error::Codec`] without a cause (for example from a responder's error reply).
    pub fn codec(message: impl Into<String>) -> Self {
        Error::Codec {
            message: message.into(),
            source: None,
        }
    }

    /// Builds an [`Error::Remote`] for a handler's failure on `subject`.
    pub fn remote(
        subject: impl Into<String>,
        code: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Remote {
            subject: subject.into(),
            code,
            message: message.into(),
            origin: None,
        }
    }

    /// The handler's error code, for an [`Error::Remote`] that carries one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Remote { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Who refused, for an [`Error::Remote`] whose responder said.
    ///
    /// ```
    /// use switchboard::{error_detail::Origin, Error};
    ///
    /// let err = Error::remote("orders.place", Some("quantity_over_limit".into()), "at most 10")
    ///     .with_origin("billing", "billing.charge");
    /// assert_eq!(err.origin().map(|o| o.service.as_str()), Some("billing"));
    /// assert_eq!(
    ///     err.to_string(),
    ///     "handler for `billing.charge` at `billing` failed: at most 10 \
    ///      (code `quantity_over_limit`); passed on through `orders.place`"
    /// );
    /// ```
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            Error::Remote { origin, .. } => origin.as_deref(),
            _ => None,
        }
    }

    /// Sets who refused, on an [`Error::Remote`]; other errors are returned unchanged.
    pub fn with_origin(mut self, service: impl Into<String>, subject: impl Into<String>) -> Self {
        if let Error::Remote { origin, .. } = &mut self {
            *origin = Some(Box::new(Origin {
                service: service.into(),
                subject: subject.into(),
            }));
        }
        self
    }

    /// Builds an [`Error::Backend`] from a client library's error.
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend,
            source: source.into(),
        }
    }

    /// Builds an [`Error::Usage`].
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
        }
    }
}

/// The text of [`Error::PayloadTooLarge`]; an unknown size or limit (0) is left out.
fn too_large(size: usize, limit: usize) -> String {
    let payload = match size {
        0 => "payload".to_owned(),
        size => format!("payload of {size} bytes"),
    };
    match limit {
        0 => format!("{payload} exceeds the responder's limit"),
        limit => format!("{payload} exceeds the limit of {limit} bytes"),
    }
}

/// Runs `call`, failing with [`Error::Timeout`] for `subject` once `timeout` has passed.
#[allow(dead_code)] // Used by the memory, http and kafka backends.
pub async fn within<T>(
    subject: &str,
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(Error::Timeout {
                subject: subject.to_owned(),
                timeout,
            })
        })
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::Codec {
            message: err.to_string(),
            source: Some(Box::new(err)),
        }
    }
}

// `main` returning `Err` prints `Debug`: make that the readable sentence plus its causes.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        let mut shown = self.to_string();
        while let Some(cause) = source {
            let text = cause.to_string();
            // Variants already quote their cause in the message; show only what is new.
            if !shown.contains(&text) {
                write!(f, "\n  caused by: {text}")?;
                shown.push_str(&text);
            }
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_retryability() {
        let timeout = Error::Timeout {
            subject: "a".into(),
            timeout: Duration::from_millis(5),
        };
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
        assert!(timeout.is_retryable());
        let remote = Error::remote("a", None, "boom");
        assert!(!remote.is_retryable());
        assert_eq!(remote.to_string(), "handler for `a` failed: boom");
        let coded = Error::remote("a", Some("out_of_stock".into()), "no tea");
        assert_eq!(coded.code(), Some("out_of_stock"));
        assert_eq!(
            format!("{coded:?}"),
            "handler for `a` failed: no tea (code `out_of_stock`)"
        );
        let disabled = Error::FeatureDisabled {
            scheme: "nats".into(),
            feature: "nats",
            enabled: "memory".into(),
        };
        assert_eq!(disabled.kind(), ErrorKind::InvalidConfig);
        assert!(disabled.to_string().contains("`nats` feature"));
    }
}
