//! The outbox's SQLite file: one table of pending events in send order.
//!
//! WAL with `synchronous = NORMAL`: a committed send survives the process
//! being killed (the write is in the operating system's hands), without an
//! fsync per send; `locking_mode = EXCLUSIVE` keeps a second process off the
//! file, since two relays would deliver every event twice.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteLockingMode, SqlitePool, SqliteSynchronous};
use sqlx::Row;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::store_file;
use crate::transport::GroupAddress;

/// The most rows one statement writes or removes (SQLite allows 32,766
/// bound values; an insert binds 6 per row).
pub(super) const MAX_ROWS: usize = 512;

/// One event waiting for a recipient.
pub(super) struct Pending {
    pub seq: i64,
    pub subject: String,
    pub message: Message,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// `None` until its first delivery; then the queue group it is still held for.
    pub group: Option<GroupAddress>,
}

/// An event on its way into the file.
pub(super) struct Entry {
    pub subject: String,
    pub message: Message,
    pub created_ms: i64,
    /// The queue group it is held for, after a first delivery that missed it.
    pub group: Option<GroupAddress>,
}

/// The open file.
#[derive(Clone)]
pub(super) struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if missing) the file at `path` and takes it for this
    /// process; a file another process holds, one that is not a database, or
    /// a directory that cannot be written is a clear error here.
    pub async fn open(path: &Path) -> Result<Store> {
        let failed = |err: sqlx::Error| match err {
            sqlx::Error::Database(db) if db.message().contains("locked") => Error::config(format!(
                "outbox store {} is in use by another process (one process per outbox file)",
                path.display()
            )),
            other => Error::config(format!("outbox store {}: {other}", path.display())),
        };
        let pool = store_file::open(
            path,
            "outbox store",
            |options| {
                options
                    .synchronous(SqliteSynchronous::Normal)
                    .locking_mode(SqliteLockingMode::Exclusive)
                    .busy_timeout(Duration::from_millis(500))
            },
            failed,
        )
        .await?;
        match Self::create_tables(&pool).await {
            Ok(()) => Ok(Store { pool }),
            Err(err) => {
                // A failed open holds nothing: let go of the file at once.
                pool.close().await;
                Err(failed(err))
            }
        }
    }

    async fn create_tables(pool: &SqlitePool) -> std::result::Result<(), sqlx::Error> {
        // Writing at once takes the exclusive lock and checks the file is a database.
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS switchboard_outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                subject TEXT NOT NULL,
                headers BLOB NOT NULL,
                payload BLOB NOT NULL,
                created_ms INTEGER NOT NULL
            )",
        )
        .execute(pool)
        .await?;
        // Files written before events were held per queue group lack its columns.
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info('switchboard_outbox')")
                .fetch_all(pool)
                .await?;
        if !columns.iter().any(|name| name == "group_pattern") {
            for column in ["group_pattern", "group_name"] {
                sqlx::query(&format!(
                    "ALTER TABLE switchboard_outbox ADD COLUMN {column} TEXT"
                ))
                .execute(pool)
                .await?;
            }
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS switchboard_groups (
                pattern TEXT NOT NULL,
                name TEXT NOT NULL,
                seen_ms INTEGER NOT NULL,
                PRIMARY KEY (pattern, name)
            ) WITHOUT ROWID",
        )
        .execute(pool)
        .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS switchboard_dedup (
                route TEXT NOT NULL,
                id TEXT NOT NULL,
                expires_ms INTEGER NOT NULL,
                PRIMARY KEY (route, id)
            ) WITHOUT ROWID",
        )
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Appends `entries` (at most [`MAX_ROWS`]) in order, as one statement:
    /// all or none, and one round trip to the database thread.
    pub async fn append(&self, entries: &[Entry]) -> Result<()> {
        let sql = insert_sql(entries.len());
        insert(&sql, entries)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Replaces the event `seq` by `entries` (its copies held for the queue
    /// groups its first delivery missed), all or nothing.
    pub async fn split(&self, seq: i64, entries: &[Entry]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        for chunk in entries.chunks(MAX_ROWS) {
            let sql = insert_sql(chunk.len());
            insert(&sql, chunk)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        sqlx::query("DELETE FROM switchboard_outbox WHERE seq = ?")
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    /// The queue groups remembered, with when each was last seen.
    pub async fn groups(&self) -> Result<Vec<(GroupAddress, i64)>> {
        let rows = sqlx::query("SELECT pattern, name, seen_ms FROM switchboard_groups")
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let group = (
                    row.try_get("pattern").map_err(store_error)?,
                    row.try_get("name").map_err(store_error)?,
                );
                Ok((group, row.try_get("seen_ms").map_err(store_error)?))
            })
            .collect()
    }

    /// Remembers `group` as seen at `seen_ms`.
    pub async fn remember_group(&self, group: &GroupAddress, seen_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO switchboard_groups (pattern, name, seen_ms) VALUES (?, ?, ?)",
        )
        .bind(group.0.as_str())
        .bind(group.1.as_str())
        .bind(seen_ms)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    /// Forgets `group`.
    pub async fn forget_group(&self, group: &GroupAddress) -> Result<()> {
        sqlx::query("DELETE FROM switchboard_groups WHERE pattern = ? AND name = ?")
            .bind(group.0.as_str())
            .bind(group.1.as_str())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// How many events are held per (subject, queue group).
    pub async fn backlog(&self) -> Result<Vec<((String, GroupAddress), u64)>> {
        let rows = sqlx::query(
            "SELECT subject, group_pattern, group_name, COUNT(*) AS held FROM switchboard_outbox
             WHERE group_name IS NOT NULL GROUP BY subject, group_pattern, group_name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let subject: String = row.try_get("subject").map_err(store_error)?;
                let group = (
                    row.try_get("group_pattern").map_err(store_error)?,
                    row.try_get("group_name").map_err(store_error)?,
                );
                let held: i64 = row.try_get("held").map_err(store_error)?;
                Ok(((subject, group), u64::try_from(held).unwrap_or(0)))
            })
            .collect()
    }

    /// Up to `limit` pending events after `after`, oldest first.
    pub async fn after(&self, after: i64, limit: u32) -> Result<Vec<Pending>> {
        let rows = sqlx::query(
            "SELECT seq, subject, headers, payload, created_ms, group_pattern, group_name
             FROM switchboard_outbox WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(pending_from).collect()
    }

    /// Removes delivered (or dead-lettered) events, as one statement per
    /// [`MAX_ROWS`] of them.
    pub async fn remove(&self, seqs: &[i64]) -> Result<()> {
        for chunk in seqs.chunks(MAX_ROWS) {
            let sql = format!(
                "DELETE FROM switchboard_outbox WHERE seq IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut delete = sqlx::query(&sql);
            for seq in chunk {
                delete = delete.bind(seq);
            }
            delete.execute(&self.pool).await.map_err(store_error)?;
        }
        Ok(())
    }

    /// Whether `id` was handled on `route` and is remembered past `now_ms`.
    pub async fn handled(&self, route: &str, id: &str, now_ms: i64) -> Result<bool> {
        let found = sqlx::query(
            "SELECT 1 FROM switchboard_dedup WHERE route = ? AND id = ? AND expires_ms > ?",
        )
        .bind(route)
        .bind(id)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(found.is_some())
    }

    /// Remembers that `id` was handled on `route` until `expires_ms`.
    pub async fn remember(&self, route: &str, id: &str, expires_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO switchboard_dedup (route, id, expires_ms) VALUES (?, ?, ?)",
        )
        .bind(route)
        .bind(id)
        .bind(expires_ms)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    /// Forgets every id remembered no later than `now_ms`; how many.
    pub async fn forget_expired(&self, now_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM switchboard_dedup WHERE expires_ms <= ?")
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }

    /// How many events are pending.
    pub async fn count(&self) -> Result<u64> {
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM switchboard_outbox")
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(store_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Closes the file (what is committed stays).
    pub async fn close(&self) {
        store_file::close(&self.pool).await;
    }
}

/// The statement inserting `rows` events.
fn insert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO switchboard_outbox (subject, headers, payload, created_ms, group_pattern, group_name) VALUES {}",
        vec!["(?, ?, ?, ?, ?, ?)"; rows].join(", ")
    )
}

type Statement<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// [`insert_sql`] with `entries` (at most [`MAX_ROWS`]) bound, in order.
fn insert<'q>(sql: &'q str, entries: &'q [Entry]) -> Statement<'q> {
    let mut insert = sqlx::query(sql);
    for entry in entries {
        let (pattern, name) = match &entry.group {
            Some((pattern, name)) => (Some(pattern.as_str()), Some(name.as_str())),
            None => (None, None),
        };
        insert = insert
            .bind(entry.subject.as_str())
            .bind(store_file::encode_headers(&entry.message.headers))
            .bind(entry.message.payload.as_ref())
            .bind(entry.created_ms)
            .bind(pattern)
            .bind(name);
    }
    insert
}

fn store_error(err: sqlx::Error) -> Error {
    Error::backend("outbox", err)
}

fn pending_from(row: &sqlx::sqlite::SqliteRow) -> Result<Pending> {
    let headers: Vec<u8> = row.try_get("headers").map_err(store_error)?;
    let payload: Vec<u8> = row.try_get("payload").map_err(store_error)?;
    let message = store_file::decode_message(&headers, payload, "outbox: a stored event")?;
    Ok(Pending {
        seq: row.try_get("seq").map_err(store_error)?,
        subject: row.try_get("subject").map_err(store_error)?,
        message,
        created_ms: row.try_get("created_ms").map_err(store_error)?,
        group: match (
            row.try_get::<Option<String>, _>("group_pattern")
                .map_err(store_error)?,
            row.try_get::<Option<String>, _>("group_name")
                .map_err(store_error)?,
        ) {
            (Some(pattern), Some(name)) => Some((pattern, name)),
            _ => None,
        },
    })
}
