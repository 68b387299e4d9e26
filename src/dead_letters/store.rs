//! The dead-letter store's SQLite file: one row per dead letter kept.
//!
//! WAL, so `switchboard dead-letters list` in another process reads while a
//! keeper writes; a row is committed before the dead letter is acknowledged.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use sqlx::Row;

use super::letter::DeadLetter;
use crate::error::{Error, Result};
use crate::store_file;

/// The open file.
#[derive(Clone)]
pub(super) struct Store {
    pool: SqlitePool,
}

const COLUMNS: &str = "id, subject, arrived_on, service, error, code, cause, attempts, times, \
                       first_ms, last_ms, headers, payload";

impl Store {
    /// Opens (creating if missing) the file at `path`; one that is not a
    /// database, or a directory that cannot be written, is a clear error.
    pub async fn open(path: &Path) -> Result<Store> {
        let failed = |err: sqlx::Error| {
            Error::config(format!("dead-letter store {}: {err}", path.display()))
        };
        let pool = store_file::open(
            path,
            "dead-letter store",
            |options| options.busy_timeout(Duration::from_secs(5)),
            failed,
        )
        .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS switchboard_dead_letters (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                subject TEXT NOT NULL,
                message_id TEXT,
                arrived_on TEXT NOT NULL,
                service TEXT NOT NULL,
                error TEXT NOT NULL,
                code TEXT,
                cause TEXT,
                attempts INTEGER NOT NULL,
                times INTEGER NOT NULL,
                first_ms INTEGER NOT NULL,
                last_ms INTEGER NOT NULL,
                headers BLOB NOT NULL,
                payload BLOB NOT NULL,
                UNIQUE (subject, message_id)
            )",
        )
        .execute(&pool)
        .await
        .map_err(failed)?;
        Ok(Store { pool })
    }

    /// Keeps one dead letter; the same message id on the same subject again
    /// updates its row (`times`, `last_ms`, the latest error) instead.
    pub async fn record(&self, letter: &DeadLetter, message_id: Option<&str>) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO switchboard_dead_letters
                (subject, message_id, arrived_on, service, error, code, cause, attempts,
                 times, first_ms, last_ms, headers, payload)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)
             ON CONFLICT (subject, message_id) DO UPDATE SET
                arrived_on = excluded.arrived_on, service = excluded.service,
                error = excluded.error, code = excluded.code, cause = excluded.cause,
                attempts = excluded.attempts, times = times + 1, last_ms = excluded.last_ms,
                headers = excluded.headers, payload = excluded.payload
             RETURNING id",
        )
        .bind(&letter.subject)
        .bind(message_id)
        .bind(&letter.arrived_on)
        .bind(&letter.service)
        .bind(&letter.error)
        .bind(&letter.code)
        .bind(&letter.cause)
        .bind(i64::from(letter.attempts))
        .bind(letter.first_ms)
        .bind(letter.last_ms)
        .bind(store_file::encode_headers(&letter.message.headers))
        .bind(letter.message.payload.as_ref())
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(id)
    }

    /// Every dead letter kept, oldest first.
    pub async fn list(&self) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM switchboard_dead_letters ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter().map(letter_from).collect()
    }

    /// One dead letter, if it is kept.
    pub async fn get(&self, id: i64) -> Result<Option<DeadLetter>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM switchboard_dead_letters WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.as_ref().map(letter_from).transpose()
    }

    /// Removes one dead letter; whether it was there.
    pub async fn remove(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM switchboard_dead_letters WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes every dead letter; how many there were.
    pub async fn remove_all(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM switchboard_dead_letters")
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }

    pub async fn close(&self) {
        store_file::close(&self.pool).await;
    }
}

fn store_error(err: sqlx::Error) -> Error {
    Error::backend("dead-letter store", err)
}

fn letter_from(row: &sqlx::sqlite::SqliteRow) -> Result<DeadLetter> {
    let headers: Vec<u8> = row.try_get("headers").map_err(store_error)?;
    let payload: Vec<u8> = row.try_get("payload").map_err(store_error)?;
    let message =
        store_file::decode_message(&headers, payload, "dead-letter store: a kept letter")?;
    let attempts: i64 = row.try_get("attempts").map_err(store_error)?;
    let times: i64 = row.try_get("times").map_err(store_error)?;
    Ok(DeadLetter {
        id: row.try_get("id").map_err(store_error)?,
        subject: row.try_get("subject").map_err(store_error)?,
        arrived_on: row.try_get("arrived_on").map_err(store_error)?,
        service: row.try_get("service").map_err(store_error)?,
        error: row.try_get("error").map_err(store_error)?,
        code: row.try_get("code").map_err(store_error)?,
        cause: row.try_get("cause").map_err(store_error)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        times: u64::try_from(times).unwrap_or(0),
        first_ms: row.try_get("first_ms").map_err(store_error)?,
        last_ms: row.try_get("last_ms").map_err(store_error)?,
        message,
    })
}
