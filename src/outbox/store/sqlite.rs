//! The outbox in an embedded SQLite file: one table of pending events in send order.
//!
//! WAL with `synchronous = NORMAL`: a committed send survives the process
//! being killed (the write is in the operating system's hands), without an
//! fsync per send; `locking_mode = EXCLUSIVE` keeps a second process off the
//! file, since two relays would deliver every event twice.

use std::path::Path;
use std::time::Duration;

use std::sync::{Arc, Weak};

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnection, SqliteLockingMode, SqlitePool, SqliteSynchronous};
use sqlx::{Connection, Row, Sqlite};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

use super::{store_error, Backend, Entry, Pending, MAX_ROWS};
use crate::error::{Error, Result};
use crate::store_file;
use crate::transport::GroupAddress;

/// How long the store keeps the file's one connection out of its pool while
/// statements follow each other, before callers' transactions
/// ([`SqliteStore::pool`]) get a turn.
const MAX_HOLD: Duration = Duration::from_millis(20);
/// How long the connection is kept after the last statement.
const KEEP_IDLE: Duration = Duration::from_millis(1);

/// The open file.
pub(crate) struct SqliteStore {
    pool: SqlitePool,
    path: std::path::PathBuf,
    /// The connection the writer, the relay and dedup share while busy: a
    /// statement that follows another pays no hand-over through the pool.
    kept: Arc<Mutex<Kept>>,
}

/// The connection kept out of the pool, since when, and when it was last used.
struct Kept {
    connection: Option<(PoolConnection<Sqlite>, Instant)>,
    used: Instant,
    /// A task gives it back once it is idle for [`KEEP_IDLE`].
    watched: bool,
}

/// The kept connection, taken for one statement or transaction.
struct OnKept<'a> {
    kept: MutexGuard<'a, Kept>,
    store: &'a SqliteStore,
}

impl std::ops::Deref for OnKept<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        match &self.kept.connection {
            Some((connection, _)) => connection,
            None => unreachable!("taken with a connection"),
        }
    }
}

impl std::ops::DerefMut for OnKept<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match &mut self.kept.connection {
            Some((connection, _)) => connection,
            None => unreachable!("taken with a connection"),
        }
    }
}

impl Drop for OnKept<'_> {
    fn drop(&mut self) {
        self.kept.used = Instant::now();
        if !self.kept.watched {
            self.kept.watched = true;
            tokio::spawn(give_back_when_idle(Arc::downgrade(&self.store.kept)));
        }
    }
}

/// Gives the kept connection back to the pool once it was idle for [`KEEP_IDLE`].
async fn give_back_when_idle(kept: Weak<Mutex<Kept>>) {
    loop {
        tokio::time::sleep(KEEP_IDLE).await;
        let Some(kept) = kept.upgrade() else { return };
        let mut kept = kept.lock().await;
        if kept.used.elapsed() >= KEEP_IDLE {
            kept.connection = None;
            kept.watched = false;
            return;
        }
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the file at `path` and takes it for this
    /// process; a file another process holds, one that is not a database, or
    /// a directory that cannot be written is a clear error here.
    pub(crate) async fn open(path: &Path) -> Result<SqliteStore> {
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
            Ok(()) => Ok(SqliteStore {
                pool,
                path: path.to_owned(),
                kept: Arc::new(Mutex::new(Kept {
                    connection: None,
                    used: Instant::now(),
                    watched: false,
                })),
            }),
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
}

#[async_trait::async_trait]
impl Backend for SqliteStore {
    /// Appends `entries` (at most [`MAX_ROWS`]) in order, as one statement:
    /// all or none, and one round trip to the database thread.
    async fn append(&self, entries: &[Entry]) -> Result<()> {
        let mut connection = self.on_kept().await?;
        let sql = insert_sql(entries.len());
        insert(&sql, entries)
            .execute(&mut *connection)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Replaces the event `seq` by `entries` (its copies held for the queue
    /// groups its first delivery missed), all or nothing.
    async fn split(&self, seq: i64, entries: &[Entry]) -> Result<()> {
        let mut connection = self.on_kept().await?;
        let mut tx = connection.begin().await.map_err(store_error)?;
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
    async fn groups(&self) -> Result<Vec<(GroupAddress, i64)>> {
        let rows = sqlx::query("SELECT pattern, name, seen_ms FROM switchboard_groups")
            .fetch_all(&mut *self.on_kept().await?)
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
    async fn remember_group(&self, group: &GroupAddress, seen_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO switchboard_groups (pattern, name, seen_ms) VALUES (?, ?, ?)",
        )
        .bind(group.0.as_str())
        .bind(group.1.as_str())
        .bind(seen_ms)
        .execute(&mut *self.on_kept().await?)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    /// Forgets `group`.
    async fn forget_group(&self, group: &GroupAddress) -> Result<()> {
        sqlx::query("DELETE FROM switchboard_groups WHERE pattern = ? AND name = ?")
            .bind(group.0.as_str())
            .bind(group.1.as_str())
            .execute(&mut *self.on_kept().await?)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// How many events are held per (subject, queue group).
    async fn backlog(&self) -> Result<Vec<((String, GroupAddress), u64)>> {
        let rows = sqlx::query(
            "SELECT subject, group_pattern, group_name, COUNT(*) AS held FROM switchboard_outbox
             WHERE group_name IS NOT NULL GROUP BY subject, group_pattern, group_name",
        )
        .fetch_all(&mut *self.on_kept().await?)
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
    async fn after(&self, after: i64, limit: u32) -> Result<Vec<Pending>> {
        let rows = sqlx::query(
            "SELECT seq, subject, headers, payload, created_ms, group_pattern, group_name
             FROM switchboard_outbox WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.on_kept().await?)
        .await
        .map_err(store_error)?;
        rows.iter().map(pending_from).collect()
    }

    /// Removes delivered (or dead-lettered) events, as one statement per
    /// [`MAX_ROWS`] of them.
    async fn remove(&self, seqs: &[i64]) -> Result<()> {
        let mut connection = self.on_kept().await?;
        for chunk in seqs.chunks(MAX_ROWS) {
            let sql = format!(
                "DELETE FROM switchboard_outbox WHERE seq IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut delete = sqlx::query(&sql);
            for seq in chunk {
                delete = delete.bind(seq);
            }
            delete
                .execute(&mut *connection)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    /// Whether `id` was handled on `route` and is remembered past `now_ms`.
    async fn handled(&self, route: &str, id: &str, now_ms: i64) -> Result<bool> {
        let found = sqlx::query(
            "SELECT 1 FROM switchboard_dedup WHERE route = ? AND id = ? AND expires_ms > ?",
        )
        .bind(route)
        .bind(id)
        .bind(now_ms)
        .fetch_optional(&mut *self.on_kept().await?)
        .await
        .map_err(store_error)?;
        Ok(found.is_some())
    }

    async fn remember_many(&self, route: &str, ids: &[(String, i64)]) -> Result<()> {
        let sql = format!(
            "INSERT OR REPLACE INTO switchboard_dedup (route, id, expires_ms) VALUES {}",
            vec!["(?, ?, ?)"; ids.len()].join(", ")
        );
        let mut statement = sqlx::query(&sql);
        for (id, expires_ms) in ids {
            statement = statement.bind(route).bind(id.as_str()).bind(*expires_ms);
        }
        statement
            .execute(&mut *self.on_kept().await?)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn handled_ids(&self, route: &str, now_ms: i64) -> Result<Vec<(String, i64)>> {
        sqlx::query_as(
            "SELECT id, expires_ms FROM switchboard_dedup WHERE route = ? AND expires_ms > ?",
        )
        .bind(route)
        .bind(now_ms)
        .fetch_all(&mut *self.on_kept().await?)
        .await
        .map_err(store_error)
    }

    /// Forgets every id remembered no later than `now_ms`; how many.
    async fn forget_expired(&self, now_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM switchboard_dedup WHERE expires_ms <= ?")
            .bind(now_ms)
            .execute(&mut *self.on_kept().await?)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }

    /// How many events are pending.
    async fn count(&self) -> Result<u64> {
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM switchboard_outbox")
            .fetch_one(&mut *self.on_kept().await?)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(store_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Closes the file (what is committed stays).
    async fn lead(&self) -> bool {
        true
    }

    fn exclusive(&self) -> bool {
        true
    }

    async fn listen(&self) -> Result<Option<tokio::sync::mpsc::Receiver<()>>> {
        Ok(None)
    }

    async fn close(&self) {
        self.kept.lock().await.connection = None;
        store_file::close(&self.pool).await;
    }
}

impl SqliteStore {
    /// The kept connection for one statement or transaction: taken from the
    /// pool when none is kept, or when it was kept for [`MAX_HOLD`] (given
    /// back first, so a caller's transaction waiting for it goes next).
    async fn on_kept(&self) -> Result<OnKept<'_>> {
        let mut kept = self.kept.lock().await;
        if kept
            .connection
            .as_ref()
            .is_none_or(|(_, since)| since.elapsed() >= MAX_HOLD)
        {
            kept.connection = None;
            let connection = self.pool.acquire().await.map_err(store_error)?;
            kept.connection = Some((connection, Instant::now()));
        }
        Ok(OnKept { kept, store: self })
    }

    /// The file's connections, for a caller's transaction that sends with
    /// [`insert_in`] (its tables live in the same file).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Inserts `entry` on `connection`, inside the caller's transaction; the
/// connection must be one of the outbox file's (from [`SqliteStore::pool`]),
/// since no relay reads another file.
pub(crate) async fn insert_in(
    connection: &mut sqlx::SqliteConnection,
    outbox: &Path,
    entry: Entry,
) -> Result<()> {
    let file: Option<String> =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_optional(&mut *connection)
            .await
            .map_err(store_error)?;
    let same = file.as_deref().is_some_and(|file| {
        match (std::fs::canonicalize(file), std::fs::canonicalize(outbox)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    });
    if !same {
        return Err(Error::config(format!(
            "send_in: the transaction is on {}, not on the outbox file {}; begin it on `Bus::outbox_sqlite()`",
            file.as_deref().filter(|f| !f.is_empty()).unwrap_or("an in-memory database"),
            outbox.display()
        )));
    }
    let entries = [entry];
    let sql = insert_sql(1);
    insert(&sql, &entries)
        .execute(&mut *connection)
        .await
        .map_err(store_error)?;
    Ok(())
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
