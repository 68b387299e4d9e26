//! The memory of handled message ids a route with `dedup` keeps: the
//! outbox's, or, without the `outbox` feature, one that cannot exist (a bus
//! refuses such a route at start).

#[cfg(feature = "outbox")]
pub(crate) use crate::outbox::{Begun, Claim, Dedup};

/// Without the `outbox` feature no route can deduplicate
/// ([`Bus::dedup_for`](crate::Bus) refuses), so this has no values.
#[cfg(not(feature = "outbox"))]
pub(crate) enum Dedup {}

/// What [`Dedup::begin`] found (never built without the `outbox` feature).
#[cfg(not(feature = "outbox"))]
#[allow(dead_code)] // Matched in serve.rs, built only by the outbox's own type.
pub(crate) enum Begun<'a> {
    Handled,
    Fresh(Claim<'a>),
}

/// The right to handle one id (never built without the `outbox` feature).
#[cfg(not(feature = "outbox"))]
pub(crate) struct Claim<'a>(&'a Dedup);

#[cfg(not(feature = "outbox"))]
impl Dedup {
    pub(crate) async fn begin(&self, _id: &str) -> Begun<'_> {
        match *self {}
    }
}

#[cfg(not(feature = "outbox"))]
impl Claim<'_> {
    pub(crate) async fn handled(self) {
        match *self.0 {}
    }
}
