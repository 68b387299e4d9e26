//! Whether the server answered: the outcome of the last command the
//! transport or one of its subscriptions sent, which `health` reports. A
//! subscription's reader sends a blocking read every 200 ms, so with one
//! running an outage shows within a read; without one, at the next publish
//! or request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use switchboard_core::health::Health;

/// The last connection failure, until a command succeeds again.
#[derive(Default)]
pub(crate) struct Reachability {
    /// Set with `failure`: a command that succeeds looks only at this.
    down: AtomicBool,
    failure: Mutex<String>,
}

impl Reachability {
    /// Notes how a command ended: a failure to reach the server marks it
    /// down; an answer, even an error reply (the server is there), marks it up.
    pub(crate) fn record<T>(&self, outcome: &redis::RedisResult<T>) {
        match outcome {
            Err(err) if unreachable(err) => {
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = err.to_string();
                self.down.store(true, Ordering::Release);
            }
            _ => {
                if self.down.load(Ordering::Acquire) {
                    self.down.store(false, Ordering::Release);
                }
            }
        }
    }

    /// Marks the server down: a command got no answer `within`, its
    /// connection still reconnecting.
    pub(crate) fn silent(&self, within: std::time::Duration) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) =
            format!("no answer within {within:?}");
        self.down.store(true, Ordering::Release);
    }

    /// `Degraded` with the failure while the server is not answering.
    pub(crate) fn health(&self) -> Health {
        if !self.down.load(Ordering::Acquire) {
            return Health::Connected;
        }
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        Health::Degraded(format!("redis server not answering: {failure}"))
    }
}

/// Whether `err` says the server could not be reached or stopped answering,
/// rather than refusing one command.
fn unreachable(err: &redis::RedisError) -> bool {
    // A server still loading its data after a restart answers only that.
    let loading = redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading);
    err.kind() == loading
        || err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_unrecoverable_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_to_reach_degrades_until_an_answer() {
        let reachability = Reachability::default();
        assert_eq!(reachability.health(), Health::Connected);
        let refused: redis::RedisResult<()> = Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        )
        .into());
        reachability.record(&refused);
        match reachability.health() {
            Health::Degraded(why) => assert!(why.contains("connection refused"), "{why}"),
            other => panic!("{other:?}"),
        }
        // An error reply comes from a server that is there.
        let replied: redis::RedisResult<()> = Err((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "WRONGTYPE",
        )
            .into());
        reachability.record(&replied);
        assert_eq!(reachability.health(), Health::Connected);
    }
}
