//! Helpers the conformance cases share: failures, unique subjects, bounded receives.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, ErrorKind};
use crate::incoming::Incoming;
use crate::subscription::Subscription;

/// Why a conformance case failed.
#[derive(Debug)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure(format!("unexpected error: {err} ({:?})", err.kind()))
    }
}

/// The result of one case.
pub type CaseResult = Result<(), Failure>;

/// Fails the case with a formatted message unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::conformance::support::Failure(format!($($msg)+)));
        }
    };
}
pub(crate) use ensure;

/// How long a case waits for a message that should arrive.
pub const RECEIVE_WITHIN: Duration = Duration::from_secs(10);

/// How long a case watches for a message that should not arrive.
pub const SILENCE_FOR: Duration = Duration::from_millis(300);

/// A subject no other case or run uses, so cases can share one server.
pub fn unique_subject(case: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "conformance.{case}.p{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The next message, or a failure naming `what` if none arrives within [`RECEIVE_WITHIN`].
pub async fn receive(subscription: &mut Subscription, what: &str) -> Result<Incoming, Failure> {
    match tokio::time::timeout(RECEIVE_WITHIN, subscription.next()).await {
        Ok(Some(incoming)) => Ok(incoming),
        Ok(None) => Err(Failure(format!(
            "subscription ended while waiting for {what}"
        ))),
        Err(_) => Err(Failure(format!(
            "{what} did not arrive within {RECEIVE_WITHIN:?}"
        ))),
    }
}

/// Fails if a message arrives within [`SILENCE_FOR`].
pub async fn expect_silence(subscription: &mut Subscription, why: &str) -> Result<(), Failure> {
    match tokio::time::timeout(SILENCE_FOR, subscription.next()).await {
        Ok(Some(incoming)) => Err(Failure(format!(
            "unexpected message on `{}` ({why}): {:?}",
            incoming.subject(),
            incoming.message()
        ))),
        Ok(None) | Err(_) => Ok(()),
    }
}

/// Checks that `result` failed with `kind`.
pub fn expect_kind<T: fmt::Debug>(
    result: Result<T, Error>,
    kind: ErrorKind,
    what: &str,
) -> Result<Error, Failure> {
    match result {
        Err(err) if err.kind() == kind => Ok(err),
        Err(err) => Err(Failure(format!(
            "{what}: expected {kind:?}, got {:?}: {err}",
            err.kind()
        ))),
        Ok(value) => Err(Failure(format!(
            "{what}: expected {kind:?}, got success: {value:?}"
        ))),
    }
}

/// A payload of `len` bytes with a recognisable pattern.
pub fn patterned_payload(len: usize) -> bytes::Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// An SQLite file for one case (`switchboard-NAME.db` in the temporary
/// directory), removed with its WAL files when dropped.
#[cfg(feature = "outbox")]
pub(crate) struct TempStore(pub std::path::PathBuf);

#[cfg(feature = "outbox")]
impl TempStore {
    pub(crate) fn new(name: &str) -> Self {
        TempStore(std::env::temp_dir().join(format!("switchboard-{name}.db")))
    }
}

#[cfg(feature = "outbox")]
impl Drop for TempStore {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}
