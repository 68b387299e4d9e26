//! Sends inside the caller's own transaction ([`Bus::send_in`](crate::Bus::send_in)):
//! the event is a row of the outbox's table written on the caller's
//! connection, so it commits with the caller's state change or not at all,
//! and the relay forwards it after the commit.

use std::path::Path;

use crate::error::Result;
use crate::message::Message;

use super::store::Entry;

/// A database connection `send_in` can write an event on, inside the
/// transaction it is in: [`sqlx::SqliteConnection`] on the outbox's SQLite
/// file, [`sqlx::PgConnection`] on its PostgreSQL database (feature
/// `outbox-postgres`). Pass `&mut *tx` for a `sqlx::Transaction`.
pub trait OutboxConnection: sealed::Insert + Send {}

impl OutboxConnection for sqlx::SqliteConnection {}

#[cfg(feature = "outbox-postgres")]
impl OutboxConnection for sqlx::PgConnection {}

pub(crate) mod sealed {
    use super::*;

    /// Writes one event on the connection; `sqlite_file` is the outbox's
    /// file when its store is SQLite.
    #[async_trait::async_trait]
    pub trait Insert {
        /// Inserts `message` for `subject` on this connection.
        async fn insert_event(
            &mut self,
            sqlite_file: Option<&Path>,
            subject: &str,
            message: Message,
            created_ms: i64,
        ) -> Result<()>;
    }
}

fn entry(subject: &str, message: Message, created_ms: i64) -> Entry {
    Entry {
        subject: subject.to_owned(),
        message,
        created_ms,
        group: None,
    }
}

#[async_trait::async_trait]
impl sealed::Insert for sqlx::SqliteConnection {
    async fn insert_event(
        &mut self,
        sqlite_file: Option<&Path>,
        subject: &str,
        message: Message,
        created_ms: i64,
    ) -> Result<()> {
        let Some(file) = sqlite_file else {
            return Err(crate::Error::config(
                "send_in: this outbox is in PostgreSQL; pass a connection to its database, not an SQLite one",
            ));
        };
        let entry = entry(subject, message, created_ms);
        super::store::sqlite::insert_in(self, file, entry).await
    }
}

#[cfg(feature = "outbox-postgres")]
#[async_trait::async_trait]
impl sealed::Insert for sqlx::PgConnection {
    async fn insert_event(
        &mut self,
        sqlite_file: Option<&Path>,
        subject: &str,
        message: Message,
        created_ms: i64,
    ) -> Result<()> {
        if sqlite_file.is_some() {
            return Err(crate::Error::config(
                "send_in: this outbox is an SQLite file; pass a connection to it (`Bus::outbox_sqlite`), not a PostgreSQL one",
            ));
        }
        let entry = entry(subject, message, created_ms);
        super::store::postgres::insert_in(self, entry).await
    }
}
