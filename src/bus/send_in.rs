//! Transactional sends (feature `outbox`): an event written into the outbox
//! inside the caller's own database transaction, so a state change and its
//! event commit together or not at all.

use super::{check_outgoing, Bus};
use crate::error::{Error, Result};
use crate::outbox::{Database, OutboxConnection};
use crate::settings::Style;
use crate::subject;
use crate::trace;
use crate::wire;

impl Bus {
    /// Sends `payload` (encoded as its route's `codec` says) on `subject` inside the caller's transaction
    /// on the outbox's database: the event is delivered after the transaction
    /// commits, and never if it rolls back. Returns the message id it carries.
    ///
    /// `connection` is `&mut *tx` for a `sqlx::Transaction` begun on the
    /// outbox's store: [`outbox_sqlite`](Self::outbox_sqlite) for its SQLite
    /// file (the caller's tables live in that file), or any pool on its
    /// PostgreSQL database (`[outbox] url`, feature `outbox-postgres`).
    ///
    /// The route decides what is delivered, as for [`send`](Self::send): an
    /// async route's event; a sync route with `fallback = "async"` gets a
    /// deferred command, handled when a responder takes it. A plain sync
    /// route is refused — a query has a caller waiting for its reply, which
    /// a send delivered after commit cannot give. Fails too without an
    /// `[outbox]`, for a connection to another database, and while
    /// `max_events` are held.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> switchboard::Result<()> {
    /// let dir = std::env::temp_dir().join(format!("sb-send-in-doc-{}", std::process::id()));
    /// let bus = switchboard::Settings::from_toml(&format!(r#"
    ///     [transports.default]
    ///     url = "memory://send-in-doc"
    ///     [[routes]]
    ///     subjects = "orders.*"
    ///     style = "async"
    ///     [outbox]
    ///     path = "{}/outbox.db"
    /// "#, dir.display()))?.connect().await?;
    /// let mut placed = bus.subscribe("orders.placed").await?;
    ///
    /// let pool = bus.outbox_sqlite().expect("an SQLite outbox");
    /// let failed = |err| switchboard::Error::backend("orders", err);
    /// let mut tx = pool.begin().await.map_err(failed)?;
    /// switchboard::outbox::sqlx::query("CREATE TABLE IF NOT EXISTS orders (id INTEGER)")
    ///     .execute(&mut *tx).await.map_err(failed)?;
    /// switchboard::outbox::sqlx::query("INSERT INTO orders (id) VALUES (7)")
    ///     .execute(&mut *tx).await.map_err(failed)?;
    /// bus.send_in(&mut *tx, "orders.placed", &7).await?;
    /// tx.commit().await.map_err(failed)?; // the order and its event, together
    ///
    /// assert_eq!(placed.next().await.unwrap().payload(), b"7");
    /// bus.close().await?;
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// # Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "outbox")))]
    pub async fn send_in<C, T>(
        &self,
        connection: &mut C,
        subject: &str,
        payload: &T,
    ) -> Result<String>
    where
        C: OutboxConnection + ?Sized,
        T: crate::payload::Payload + ?Sized,
    {
        let Some(outbox) = &self.inner.outbox else {
            return Err(Error::config(
                "send_in writes into the outbox: configure an [outbox] (a `path` or a `url`)",
            ));
        };
        subject::validate(subject)?;
        let route = self.resolve(subject);
        let mut message = super::encode_payload(route.codec, payload)?;
        let id = crate::outbox::with_message_id(&mut message);
        match route.style {
            Style::Async => {}
            Style::Sync if route.fallback_async => {
                message.headers.insert(wire::DEFERRED_ID, id.clone());
            }
            Style::Sync => {
                return Err(Error::config(format!(
                    "send_in: `{subject}` is a sync route: its caller waits for a reply, which a send delivered after commit cannot give; make the route async, or give it `fallback = \"async\"`"
                )))
            }
        }
        check_outgoing(route.carrier.transport.capabilities(), &message)?;
        if route.cloudevents {
            crate::cloudevents::stamp(
                &mut message.headers,
                subject,
                &self.inner.cloudevents_source,
            );
        }
        let _trace = trace::propagate(&mut message.headers);
        outbox.append_in(connection, subject, message).await?;
        Ok(id)
    }

    /// The connections to the outbox's SQLite file, to begin the
    /// transactions of [`send_in`](Self::send_in) on; `None` without an
    /// outbox or with one in PostgreSQL. The file has one connection: a
    /// transaction holds the outbox's writer and relay until it ends, so
    /// inside one send with `send_in`, not [`send`](Self::send) (which would
    /// wait for the transaction's own connection).
    #[cfg_attr(docsrs, doc(cfg(feature = "outbox")))]
    pub fn outbox_sqlite(&self) -> Option<sqlx::SqlitePool> {
        match self.inner.outbox.as_ref()?.database() {
            Database::Sqlite(sqlite) => Some(sqlite.pool().clone()),
            #[cfg(feature = "outbox-postgres")]
            Database::Postgres(_) => None,
        }
    }

    /// The connections to the outbox's PostgreSQL database (`[outbox] url`),
    /// to begin the transactions of [`send_in`](Self::send_in) on (a pool of
    /// the caller's own on the same database does as well); `None` without
    /// an outbox or with one in an SQLite file.
    #[cfg(feature = "outbox-postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "outbox-postgres")))]
    pub fn outbox_postgres(&self) -> Option<sqlx::PgPool> {
        match self.inner.outbox.as_ref()?.database() {
            Database::Postgres(postgres) => Some(postgres.pool().clone()),
            Database::Sqlite(_) => None,
        }
    }
}
