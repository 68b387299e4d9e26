//! `Health`: what a transport reports about its connection, for a service's health endpoint.

use std::fmt;

/// The state of a transport, from `Bus::health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Connected and serving.
    Connected,
    /// Serving, but impaired: reconnecting, or some destinations failing. The
    /// text says what.
    Degraded(String),
    /// Closed; calls fail with [`Error::Closed`](crate::Error::Closed).
    Closed,
}

impl Health {
    /// Whether calls can be expected to work (connected or degraded).
    pub fn is_serving(&self) -> bool {
        !matches!(self, Health::Closed)
    }

    /// The state's name: `connected`, `degraded` or `closed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Health::Connected => "connected",
            Health::Degraded(_) => "degraded",
            Health::Closed => "closed",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Degraded(why) => write!(f, "degraded: {why}"),
            other => f.write_str(other.as_str()),
        }
    }
}
