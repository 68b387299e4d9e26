//! The relay: forwards held events in send order, removes each once a
//! recipient took it, holds back a subject nobody takes (retrying with a
//! growing pause), and dead-letters what waited longer than `max_age`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::store::Pending;
use super::{now_ms, Shared};
use crate::error::{Error, Result};
use crate::transport::{Reach, Transport};
use crate::wire;

/// Events read from the file per step.
const PAGE: u32 = 256;
/// The first pause before retrying a subject nobody took; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How long the relay lets new sends gather before it forwards them.
const GATHER: Duration = Duration::from_millis(2);
/// How often the relay looks again when nothing woke it.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Which transport carries a subject, as the bus's route table decides.
pub(crate) struct Routes(pub(crate) Box<TransportFor>);

/// A subject's transport, `None` when the route names none that is configured.
pub(crate) type TransportFor = dyn Fn(&str) -> Option<Arc<dyn Transport>> + Send + Sync;

impl Routes {
    fn transport(&self, subject: &str) -> Option<Arc<dyn Transport>> {
        (self.0)(subject)
    }
}

/// What one pass updates: subjects held back, and events delivered but not yet removed.
struct Progress<'a> {
    held: &'a mut HashMap<String, Held>,
    delivered: &'a mut HashSet<i64>,
}

/// A subject held back: when to try again, and how many tries failed.
struct Held {
    until: Instant,
    failures: u32,
}

pub(super) async fn run(shared: Arc<Shared>, routes: Routes, mut stopped: watch::Receiver<bool>) {
    let mut held: HashMap<String, Held> = HashMap::new();
    // Events delivered whose removal failed (a full disk, say): removal is
    // retried, and they are never delivered a second time by this process.
    let mut delivered: HashSet<i64> = HashSet::new();
    // Events up to here were looked at: a new send only needs a look at what
    // came after, so a long-held backlog is not read again for every send.
    let mut seen_through = 0;
    let mut full = true;
    loop {
        if *stopped.borrow() {
            return;
        }
        let start = if full { 0 } else { seen_through };
        let progress = Progress {
            held: &mut held,
            delivered: &mut delivered,
        };
        let next_retry = match pass(&shared, &routes, progress, &stopped, start).await {
            Ok((next_retry, last)) => {
                seen_through = seen_through.max(last);
                next_retry
            }
            Err(err) => {
                tracing::error!(error = %err, "outbox: could not read or update the store; retrying");
                Some(Instant::now() + MAX_PAUSE)
            }
        };
        let wake = next_retry.unwrap_or_else(|| Instant::now() + IDLE_CHECK);
        full = tokio::select! {
            () = shared.committed.notified() => false,
            () = tokio::time::sleep_until(wake) => true,
            _ = stopped.changed() => return,
        };
        if !full {
            // Let the sends of the next moment join this pass: the file has
            // one connection, and a pass per send would stand in every
            // sender's way.
            tokio::time::sleep(GATHER).await;
        }
    }
}

/// One pass over the events after `start` (all of them when 0): forwards
/// what it can, in order per subject. Held-back subjects are retried only in
/// a full pass, which sees their oldest event first. Returns when the
/// earliest held-back subject may be tried again, and the last event seen.
async fn pass(
    shared: &Shared,
    routes: &Routes,
    progress: Progress<'_>,
    stopped: &watch::Receiver<bool>,
    start: i64,
) -> Result<(Option<Instant>, i64)> {
    let Progress { held, delivered } = progress;
    let full = start == 0;
    let mut after = start;
    // Subjects held back in this pass: their later events wait too (order).
    let mut waiting: HashSet<String> = HashSet::new();
    loop {
        let page = shared.store.after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let mut done = Vec::new();
        for event in page {
            if *stopped.borrow() {
                break;
            }
            if waiting.contains(&event.subject) {
                continue;
            }
            if let Some(hold) = held.get(&event.subject) {
                if !full || Instant::now() < hold.until {
                    waiting.insert(event.subject.clone());
                    continue;
                }
            }
            let seq = event.seq;
            if delivered.contains(&seq) {
                done.push(seq);
                continue;
            }
            match forward(shared, routes, event).await {
                Forwarded::Done => {
                    delivered.insert(seq);
                    done.push(seq);
                }
                Forwarded::HoldBack(subject) => {
                    let hold = held.entry(subject.clone()).or_insert(Held {
                        until: Instant::now(),
                        failures: 0,
                    });
                    hold.failures += 1;
                    let pause = FIRST_PAUSE
                        .saturating_mul(1 << hold.failures.min(6).saturating_sub(1))
                        .min(MAX_PAUSE);
                    hold.until = Instant::now() + pause;
                    waiting.insert(subject);
                }
            }
        }
        if !done.is_empty() {
            shared.store.remove(&done).await?;
            for seq in &done {
                delivered.remove(seq);
            }
            shared
                .pending
                .fetch_sub(done.len() as u64, Ordering::Relaxed);
        }
        if *stopped.borrow() {
            break;
        }
    }
    // Subjects that went through (or have nothing left) are no longer held back.
    if full {
        held.retain(|subject, _| waiting.contains(subject));
    }
    Ok((held.values().map(|hold| hold.until).min(), after))
}

enum Forwarded {
    /// Delivered, or dead-lettered: remove it.
    Done,
    /// Nobody took it, or the transport failed: hold the subject back.
    HoldBack(String),
}

async fn forward(shared: &Shared, routes: &Routes, event: Pending) -> Forwarded {
    let age_ms = now_ms().saturating_sub(event.created_ms);
    let max_age = &shared.settings.max_age;
    let Some(transport) = routes.transport(&event.subject) else {
        // The route table changed between runs and names a transport no longer configured.
        return expire(
            shared,
            routes,
            event,
            "its route names a transport that is not configured",
        )
        .await;
    };
    if u128::try_from(age_ms).unwrap_or(0) > max_age.as_millis() {
        let reason = format!("no recipient took it within max_age ({max_age:?})");
        return expire(shared, routes, event, &reason).await;
    }
    let subject = event.subject.clone();
    match transport
        .publish_reaching(&event.subject, event.message)
        .await
    {
        Ok(Reach::Taken | Reach::Unknown) => Forwarded::Done,
        Ok(Reach::Nobody) => Forwarded::HoldBack(subject),
        Err(err) => {
            tracing::debug!(%subject, error = %err, "outbox: forwarding failed; held for a retry");
            Forwarded::HoldBack(subject)
        }
    }
}

/// Publishes an event nobody took in time to the dead-letter subject, with
/// the reason; counted. If that reaches nobody either, it is logged as lost.
async fn expire(shared: &Shared, routes: &Routes, event: Pending, reason: &str) -> Forwarded {
    shared.expired.fetch_add(1, Ordering::Relaxed);
    #[cfg(feature = "metrics")]
    metrics::counter!("switchboard_outbox_expired_total", "subject" => event.subject.clone())
        .increment(1);
    let dead_letter = &shared.settings.dead_letter;
    let mut letter = event.message;
    letter
        .headers
        .insert(wire::DEAD_LETTER_SUBJECT, event.subject.as_str());
    letter
        .headers
        .insert(wire::DEAD_LETTER_ERROR, wire::sanitize_header_value(reason));
    letter.headers.insert(wire::DEAD_LETTER_ATTEMPTS, "0");
    letter.headers.insert(wire::DEAD_LETTER_SERVICE, "outbox");
    let published = match routes.transport(dead_letter) {
        Some(transport) => transport.publish_reaching(dead_letter, letter).await,
        None => Err(Error::config(format!("no transport for `{dead_letter}`"))),
    };
    match published {
        Ok(Reach::Nobody) | Err(_) => {
            tracing::error!(subject = %event.subject, %reason, %dead_letter, "outbox: event expired and its dead letter reached nobody; lost")
        }
        Ok(_) => {
            tracing::error!(subject = %event.subject, %reason, %dead_letter, "outbox: event expired; dead-lettered")
        }
    }
    Forwarded::Done
}
