//! What the embedded SQLite files (the outbox, the dead-letter store) share:
//! opening one, and the stored form of a message's headers.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::error::{Error, Result};
use crate::headers::Headers;
use crate::message::Message;

/// Opens (creating it and its directory if missing) the WAL-mode file at
/// `path` with one connection, set up further by `configure`; `what` names
/// it in errors, and `failed` turns a database error into the caller's.
pub(crate) async fn open(
    path: &Path,
    what: &str,
    configure: impl FnOnce(SqliteConnectOptions) -> SqliteConnectOptions,
    failed: impl Fn(sqlx::Error) -> Error,
) -> Result<SqlitePool> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|err| Error::config(format!("{what} {}: {err}", parent.display())))?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    SqlitePoolOptions::new()
        .max_connections(1)
        // A ping per acquire would be a second round trip to the database
        // thread for every statement; a file does not drop connections.
        .test_before_acquire(false)
        .connect_with(configure(options))
        .await
        .map_err(failed)
}

/// Closes the file for good, so this or another process can open it at once.
///
/// `SqlitePool::close` waits for a connection in use to come back, but one
/// given back while it waits is put among the idle ones and left open, and
/// with it the file's exclusive lock; closing again shuts it.
pub(crate) async fn close(pool: &SqlitePool) {
    for _ in 0..3 {
        pool.close().await;
        if pool.size() == 0 {
            return;
        }
    }
    tracing::warn!(
        connections = pool.size(),
        "an SQLite store's connection stayed open after closing; the file stays locked until the process lets go of it"
    );
}

/// The headers as the JSON array of `[name, value]` pairs.
pub(crate) fn encode_headers(headers: &Headers) -> Vec<u8> {
    let pairs: Vec<(&str, &str)> = headers.iter().collect();
    serde_json::to_vec(&pairs).unwrap_or_else(|_| b"[]".to_vec())
}

/// The message back from its stored headers and payload; `what` names it in errors.
pub(crate) fn decode_message(headers: &[u8], payload: Vec<u8>, what: &str) -> Result<Message> {
    let pairs: Vec<(String, String)> = serde_json::from_slice(headers)
        .map_err(|err| Error::codec(format!("{what}'s headers: {err}")))?;
    let mut message = Message::new(payload);
    for (name, value) in pairs {
        message.headers.insert(name, value);
    }
    Ok(message)
}
