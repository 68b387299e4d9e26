//! The outbox in a PostgreSQL database (feature `outbox-postgres`) that
//! several processes of a service share. Each process writes its own sends
//! (`send_in` inside the caller's transaction). The relay runs in the
//! process whose dedicated connection owns the store's advisory lock (a
//! lock PostgreSQL releases when that connection closes); the other
//! processes try for the lock every second. Each committed event sends a
//! `NOTIFY`, which wakes the relay for events any process wrote.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

use super::{store_error, Backend, Entry, Pending};
use crate::error::{Error, Result};
use crate::store_file;
use crate::transport::GroupAddress;

/// The channel every commit of an event notifies.
const CHANNEL: &str = "switchboard_outbox";
/// The advisory lock the relaying process holds ("SWOUTBOX").
const RELAY_LOCK: i64 = 0x5357_4f55_5442_4f58;
/// The advisory lock held while the tables are created ("SWOUTDDL").
const SCHEMA_LOCK: i64 = 0x5357_4f55_5444_444c;
/// Connections the writer, the relay and dedup share.
const POOL_SIZE: u32 = 8;

/// The open database.
pub(crate) struct PgStore {
    pool: PgPool,
    options: PgConnectOptions,
    /// The connection holding (or trying for) the relay lock, and whether it holds it.
    lock: Mutex<Option<(PgConnection, bool)>>,
    listener: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// The read-only snapshot the relay's current pass reads its pages in:
    /// numbers are taken at insert and committed in another order, so pages
    /// read in separate snapshots could pass over a late commit's event and
    /// deliver its sender's next one first.
    snapshot: Mutex<Option<sqlx::Transaction<'static, sqlx::Postgres>>>,
}

impl PgStore {
    /// Connects to the database at `url` and creates the outbox's tables if
    /// missing; a URL that does not parse, a server that cannot be reached or
    /// refuses the credentials is a clear error here.
    pub(crate) async fn open(url: &str) -> Result<PgStore> {
        let shown = redact(url);
        let options: PgConnectOptions = url
            .parse()
            .map_err(|err| Error::config(format!("outbox url {shown}: {err}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(|err| Error::Connect {
                url: format!("outbox database {shown}"),
                source: Box::new(err),
            })?;
        if let Err(err) = create_tables(&pool).await {
            pool.close().await;
            return Err(Error::config(format!("outbox database {shown}: {err}")));
        }
        Ok(PgStore {
            pool,
            options,
            lock: Mutex::new(None),
            listener: std::sync::Mutex::new(None),
            snapshot: Mutex::new(None),
        })
    }

    /// The database's connections, for a caller's transaction that sends with [`insert_in`].
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn create_tables(pool: &PgPool) -> std::result::Result<(), sqlx::Error> {
    // Processes starting together would race on `CREATE TABLE IF NOT EXISTS`.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    for statement in [
        "CREATE TABLE IF NOT EXISTS switchboard_outbox (
            seq BIGSERIAL PRIMARY KEY,
            subject TEXT NOT NULL,
            headers BYTEA NOT NULL,
            payload BYTEA NOT NULL,
            created_ms BIGINT NOT NULL,
            group_pattern TEXT,
            group_name TEXT
        )",
        "CREATE TABLE IF NOT EXISTS switchboard_groups (
            pattern TEXT NOT NULL,
            name TEXT NOT NULL,
            seen_ms BIGINT NOT NULL,
            PRIMARY KEY (pattern, name)
        )",
        "CREATE TABLE IF NOT EXISTS switchboard_dedup (
            route TEXT NOT NULL,
            id TEXT NOT NULL,
            expires_ms BIGINT NOT NULL,
            PRIMARY KEY (route, id)
        )",
    ] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await
}

#[async_trait::async_trait]
impl Backend for PgStore {
    async fn append(&self, entries: &[Entry]) -> Result<()> {
        let mut connection = self.pool.acquire().await.map_err(store_error)?;
        insert(&mut connection, entries).await.map_err(store_error)
    }

    async fn split(&self, seq: i64, entries: &[Entry]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        for chunk in entries.chunks(super::MAX_ROWS) {
            insert(&mut tx, chunk).await.map_err(store_error)?;
        }
        sqlx::query("DELETE FROM switchboard_outbox WHERE seq = $1")
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    async fn groups(&self) -> Result<Vec<(GroupAddress, i64)>> {
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

    async fn remember_group(&self, group: &GroupAddress, seen_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO switchboard_groups (pattern, name, seen_ms) VALUES ($1, $2, $3)
             ON CONFLICT (pattern, name) DO UPDATE SET seen_ms = EXCLUDED.seen_ms",
        )
        .bind(group.0.as_str())
        .bind(group.1.as_str())
        .bind(seen_ms)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn forget_group(&self, group: &GroupAddress) -> Result<()> {
        sqlx::query("DELETE FROM switchboard_groups WHERE pattern = $1 AND name = $2")
            .bind(group.0.as_str())
            .bind(group.1.as_str())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn backlog(&self) -> Result<Vec<((String, GroupAddress), u64)>> {
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

    async fn after(&self, after: i64, limit: u32) -> Result<Vec<Pending>> {
        let mut snapshot = self.snapshot.lock().await;
        if after == 0 || snapshot.is_none() {
            if let Some(previous) = snapshot.take() {
                let _ = previous.rollback().await;
            }
            let mut tx = self.pool.begin().await.map_err(store_error)?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            *snapshot = Some(tx);
        }
        let Some(tx) = snapshot.as_mut() else {
            unreachable!("a snapshot was just begun")
        };
        let rows = sqlx::query(
            "SELECT seq, subject, headers, payload, created_ms, group_pattern, group_name
             FROM switchboard_outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&mut **tx)
        .await
        .map_err(store_error)?;
        rows.iter().map(pending_from).collect()
    }

    async fn pass_done(&self) {
        if let Some(tx) = self.snapshot.lock().await.take() {
            let _ = tx.rollback().await;
        }
    }

    async fn remove(&self, seqs: &[i64]) -> Result<()> {
        sqlx::query("DELETE FROM switchboard_outbox WHERE seq = ANY($1)")
            .bind(seqs)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn handled(&self, route: &str, id: &str, now_ms: i64) -> Result<bool> {
        let found = sqlx::query(
            "SELECT 1 FROM switchboard_dedup WHERE route = $1 AND id = $2 AND expires_ms > $3",
        )
        .bind(route)
        .bind(id)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(found.is_some())
    }

    async fn remember_many(&self, route: &str, ids: &[(String, i64)]) -> Result<()> {
        let (names, expiries): (Vec<&str>, Vec<i64>) = ids
            .iter()
            .map(|(id, expires)| (id.as_str(), *expires))
            .unzip();
        sqlx::query(
            "INSERT INTO switchboard_dedup (route, id, expires_ms)
             SELECT $1, id, expires_ms FROM UNNEST($2::text[], $3::bigint[]) AS ids (id, expires_ms)
             ON CONFLICT (route, id) DO UPDATE SET expires_ms = EXCLUDED.expires_ms",
        )
        .bind(route)
        .bind(names)
        .bind(expiries)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn handled_ids(&self, route: &str, now_ms: i64) -> Result<Vec<(String, i64)>> {
        sqlx::query_as(
            "SELECT id, expires_ms FROM switchboard_dedup WHERE route = $1 AND expires_ms > $2",
        )
        .bind(route)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)
    }

    async fn forget_expired(&self, now_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM switchboard_dedup WHERE expires_ms <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }

    async fn count(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM switchboard_outbox")
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn lead(&self) -> bool {
        let mut lock = self.lock.lock().await;
        if let Some((connection, held)) = lock.as_mut() {
            // A connection that broke let go of the lock with it.
            let alive = if *held {
                sqlx::query("SELECT 1")
                    .execute(&mut *connection)
                    .await
                    .is_ok()
            } else {
                try_lock(connection).await.map(|got| *held = got).is_ok()
            };
            if alive {
                return *held;
            }
            if *held {
                tracing::warn!("outbox: lost the connection holding the relay lock; another process may relay now");
            }
            *lock = None;
        }
        let Ok(mut connection) = PgConnection::connect_with(&self.options).await else {
            return false;
        };
        let held = try_lock(&mut connection).await.unwrap_or(false);
        *lock = Some((connection, held));
        held
    }

    fn exclusive(&self) -> bool {
        false
    }

    async fn listen(&self) -> Result<Option<mpsc::Receiver<()>>> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(store_error)?;
        listener.listen(CHANNEL).await.map_err(store_error)?;
        let (wake, woken) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(_) => {
                        if wake.is_closed() {
                            return;
                        }
                        // One pending wake-up covers any number of commits.
                        let _ = wake.try_send(());
                    }
                    Err(err) => {
                        // Reconnects on the next call; the relay's idle pass covers the gap.
                        tracing::debug!(error = %err, "outbox: LISTEN connection lost; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(Some(woken))
    }

    async fn close(&self) {
        self.pass_done().await;
        if let Some(task) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
        if let Some((connection, _)) = self.lock.lock().await.take() {
            let _ = connection.close().await;
        }
        self.pool.close().await;
    }
}

async fn try_lock(connection: &mut PgConnection) -> std::result::Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(RELAY_LOCK)
        .fetch_one(connection)
        .await
}

/// Inserts `entries` (at most [`MAX_ROWS`](super::MAX_ROWS)) in one
/// statement that also notifies [`CHANNEL`], delivered when the transaction
/// commits.
async fn insert(
    connection: &mut PgConnection,
    entries: &[Entry],
) -> std::result::Result<(), sqlx::Error> {
    let mut values = String::new();
    for row in 0..entries.len() {
        let base = row * 6;
        if row > 0 {
            values.push_str(", ");
        }
        values.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${})",
            base + 1,
            base + 2,
            base + 3,
            base + 4,
            base + 5,
            base + 6
        ));
    }
    let sql = format!(
        "WITH inserted AS (INSERT INTO switchboard_outbox
            (subject, headers, payload, created_ms, group_pattern, group_name)
            VALUES {values} RETURNING seq)
         SELECT pg_notify('{CHANNEL}', '') FROM (SELECT 1 FROM inserted LIMIT 1) AS any_row"
    );
    let mut statement = sqlx::query(&sql);
    for entry in entries {
        let (pattern, name) = match &entry.group {
            Some((pattern, name)) => (Some(pattern.as_str()), Some(name.as_str())),
            None => (None, None),
        };
        statement = statement
            .bind(entry.subject.as_str())
            .bind(store_file::encode_headers(&entry.message.headers))
            .bind(entry.message.payload.as_ref())
            .bind(entry.created_ms)
            .bind(pattern)
            .bind(name);
    }
    statement.execute(connection).await?;
    Ok(())
}

/// Inserts `entry` on `connection`, inside the caller's transaction: it is
/// relayed once that commits, and never if it rolls back. The connection
/// must be to the outbox's database.
pub(crate) async fn insert_in(connection: &mut PgConnection, entry: Entry) -> Result<()> {
    insert(connection, std::slice::from_ref(&entry))
        .await
        .map_err(|err| match &err {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => Error::config(
                "send_in: the transaction's database has no outbox table; begin it on the outbox's database (`[outbox] url`)",
            ),
            _ => store_error(err),
        })
}

fn pending_from(row: &sqlx::postgres::PgRow) -> Result<Pending> {
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

/// `url` with its password hidden, for error messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}
