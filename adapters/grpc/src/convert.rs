//! Messages and snapshots to and from their protobuf form.

use super::proto;
use switchboard_core::headers::Headers;
use switchboard_core::message::Message;
use switchboard_mesh::{Advertised, Snapshot};

/// The backend's name in errors and capabilities.
pub(super) const BACKEND: &str = "grpc";

/// A message for `subject` as an envelope.
pub(super) fn envelope(subject: &str, message: Message) -> proto::Envelope {
    proto::Envelope {
        subject: subject.to_owned(),
        headers: message
            .headers
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        payload: message.payload,
    }
}

/// An envelope's message. Headers that are not a portable name and a
/// printable-ASCII value are left out, as on every backend.
pub(super) fn message(envelope: proto::Envelope) -> Message {
    Message {
        payload: envelope.payload,
        headers: headers(&envelope.headers),
    }
}

/// Received headers, each checked like a header from any other wire.
pub(super) fn headers(received: &std::collections::BTreeMap<String, String>) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in received {
        headers.insert_received(name, value);
    }
    headers
}

pub(super) fn snapshot_out(snapshot: &Snapshot) -> proto::Snapshot {
    proto::Snapshot {
        service: snapshot.service.clone(),
        incarnation: snapshot.incarnation,
        generation: snapshot.generation,
        subscriptions: snapshot
            .subscriptions
            .iter()
            .map(|advertised| proto::Advertised {
                subject: advertised.subject.clone(),
                group: advertised.group.clone().unwrap_or_default(),
            })
            .collect(),
        peers: snapshot.peers.clone(),
        leaving: snapshot.leaving,
    }
}

pub(super) fn snapshot_in(snapshot: proto::Snapshot) -> Snapshot {
    Snapshot {
        service: snapshot.service,
        incarnation: snapshot.incarnation,
        generation: snapshot.generation,
        subscriptions: snapshot
            .subscriptions
            .into_iter()
            .map(|advertised| Advertised {
                subject: advertised.subject,
                group: Some(advertised.group).filter(|g| !g.is_empty()),
            })
            .collect(),
        peers: snapshot.peers,
        leaving: snapshot.leaving,
    }
}
