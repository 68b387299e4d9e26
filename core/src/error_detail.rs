//! Error details beyond [`Error`](crate::Error) and [`ErrorKind`](crate::ErrorKind):
//! who refused a request, which subscribers an event missed, and the boxed
//! cause a backend's client library gave.

/// A boxed error from a backend's client library, kept as the `source` of an [`Error`](crate::Error).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The service and subject whose handler refused a request (see [`Error::Remote`](crate::Error::Remote)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The refusing service's name.
    pub service: String,
    /// The subject its handler refused.
    pub subject: String,
}

/// One subscriber that did not accept an event (see [`Error::Undelivered`](crate::Error::Undelivered)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// Who it was (for HTTP, the peer's base URL).
    pub peer: String,
    /// Why it failed.
    pub reason: String,
}
