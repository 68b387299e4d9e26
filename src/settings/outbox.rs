//! The `[outbox]` section: where async sends are kept until a recipient took them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `[outbox]` section (feature `outbox`): with a `path`, every async send
/// (`send` on an async route, and `publish`) on a transport that does not
/// keep events for an absent consumer (memory, HTTP, gRPC, core NATS) is
/// first written to an embedded SQLite file there, then forwarded by a
/// background relay, and removed only once a recipient took it. Without a
/// `path` (the default) sends go straight to the transport: at most once.
///
/// ```toml
/// [outbox]
/// path = "data/outbox.db"            # created if missing; one process per file
/// # url = "postgres://orders@127.0.0.1/orders"  # instead of `path`: PostgreSQL
/// max_events = 100000                # a send beyond fails with `Error::OutboxFull`
/// max_age = "24h"                    # held longer, it is dead-lettered
/// dead_letter = "dead-letter.outbox" # where expired events go, with the reason
/// forget_after = "24h"               # a queue group not seen this long is forgotten
/// ```
///
/// On memory, HTTP and gRPC the outbox also remembers every queue group (a
/// [`Service`](crate::Service)'s name) it has seen subscribed to a subject,
/// in the same file: an event for a group whose every member is away is
/// held for that group — while the groups that are there get it at once —
/// and delivered to it, in send order, when a member returns. A group not
/// seen for `forget_after` is forgotten; what was held for it is
/// dead-lettered with the reason.
///
/// With a `url` instead of a `path` (feature `outbox-postgres`), the store
/// is a PostgreSQL database, which several processes of a service may share:
/// each writes its own sends, one at a time relays them (the holder of an
/// advisory lock; another takes over when it goes), and
/// [`Bus::send_in`](crate::Bus::send_in) writes an event inside the
/// caller's own transaction on that database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSettings {
    /// The SQLite file; the outbox is off without it or a `url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// A PostgreSQL database (`postgres://user:password@host:port/database`)
    /// instead of a file (feature `outbox-postgres`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The most events held at once (default 100,000).
    pub max_events: u64,
    /// How long an event may wait for a recipient before it is dead-lettered (default 24 h).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// The subject expired events are published to, with `sb-dead-letter-*` headers.
    pub dead_letter: String,
    /// How long a queue group may go unseen before it is forgotten and what
    /// was held for it dead-lettered (default 24 h).
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            path: None,
            url: None,
            max_events: 100_000,
            max_age: Duration::from_secs(24 * 3600),
            dead_letter: "dead-letter.outbox".to_owned(),
            forget_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl OutboxSettings {
    /// Whether the outbox is on: a `path` or a `url` is set.
    pub fn is_on(&self) -> bool {
        self.path.is_some() || self.url.is_some()
    }
}
