//! The service's side of deduplication by message id: which id an event has.

pub(crate) use crate::handled_ids::{Begun, Claim, Dedup};
use crate::incoming::Incoming;
use crate::wire;

/// The id an event is known by: its `sb-message-id`, else where the backend
/// keeps it (a Kafka record's partition and offset, the same on redelivery).
pub(super) fn delivery_id(incoming: &Incoming) -> Option<String> {
    match incoming.headers().get(wire::MESSAGE_ID) {
        Some(id) => Some(id.to_owned()),
        None => incoming.position(),
    }
}
