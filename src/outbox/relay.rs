//! The relay: forwards held events in send order, removes each once a
//! recipient took it, holds back a subject nobody takes (retrying with a
//! growing pause), and dead-letters what waited longer than `max_age`.
//!
//! Where the transport tells which queue groups are subscribed (memory,
//! HTTP, gRPC), the relay remembers every group it sees, in the file. An
//! event's first delivery goes to the plain subscribers and every known
//! group; the groups it missed get a copy each, held in the file for that
//! group alone and forwarded, in send order, when a member is back.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::shared::{now_ms, Shared};
use super::store::{Entry, Pending};
use crate::error::{Error, Result};
use crate::subject;
use crate::transport::{GroupAddress, Reach, Transport};
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

/// A held-back line of events: a subject's first deliveries (`None`), or
/// what a subject holds for one queue group.
type Line = (String, Option<GroupAddress>);

/// A line held back: when to try again, and how many tries failed.
struct Held {
    until: Instant,
    failures: u32,
}

/// A remembered queue group: when it was last seen subscribed, and when that was last written.
struct Seen {
    seen_ms: i64,
    written_ms: i64,
}

/// Write a group's "seen" time at most this often.
const SEEN_WRITE_EVERY_MS: i64 = 60_000;

/// What the relay keeps between passes.
struct State {
    held: HashMap<Line, Held>,
    /// Events delivered whose removal failed (a full disk, say): removal is
    /// retried, and they are never delivered a second time by this process.
    delivered: HashSet<i64>,
    /// Queue groups seen subscribed (also in the file).
    groups: HashMap<GroupAddress, Seen>,
    /// Events held per (subject, group): while a group has any, later events
    /// of the subject queue up behind them for it (its order).
    backlog: HashMap<(String, GroupAddress), u64>,
}

/// How long a process that does not relay (another holds a shared store's
/// lock) waits before it tries for the lock again.
const LEAD_RETRY: Duration = Duration::from_secs(1);

/// Relays until `stopped`: at once for a file this process holds; for a
/// shared database, while this process holds its relay lock, trying for it
/// again every [`LEAD_RETRY`] while another process holds it.
pub(super) async fn run(shared: Arc<Shared>, routes: Routes, mut stopped: watch::Receiver<bool>) {
    loop {
        if *stopped.borrow() {
            return;
        }
        if shared.store.lead().await {
            if relay_while_leading(&shared, &routes, &mut stopped).await == Ended::Stopped {
                return;
            }
        } else {
            refresh_pending(&shared).await;
        }
        tokio::select! {
            () = tokio::time::sleep(LEAD_RETRY) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Why [`relay_while_leading`] returned.
#[derive(PartialEq, Eq)]
enum Ended {
    Stopped,
    /// The shared store's lock was lost: another process may relay now.
    LostLead,
}

/// Reads the pending count again: other processes may write the store too,
/// and a caller's transaction counted in by `send_in` may have rolled back.
async fn refresh_pending(shared: &Shared) {
    let _counting = shared.counting.lock().await;
    if let Ok(count) = shared.store.count().await {
        shared.pending.store(count, Ordering::Relaxed);
    }
}

async fn relay_while_leading(
    shared: &Shared,
    routes: &Routes,
    stopped: &mut watch::Receiver<bool>,
) -> Ended {
    let mut state = State {
        held: HashMap::new(),
        delivered: HashSet::new(),
        groups: HashMap::new(),
        backlog: HashMap::new(),
    };
    match shared.store.groups().await {
        Ok(groups) => {
            for (group, seen_ms) in groups {
                let seen = Seen {
                    seen_ms,
                    written_ms: seen_ms,
                };
                state.groups.insert(group, seen);
            }
        }
        Err(err) => {
            tracing::error!(error = %err, "outbox: could not read the remembered queue groups")
        }
    }
    match shared.store.backlog().await {
        Ok(backlog) => state.backlog.extend(backlog),
        Err(err) => {
            tracing::error!(error = %err, "outbox: could not read what is held per queue group")
        }
    }
    // Events up to here were looked at: a new send only needs a look at what
    // came after, so a long-held backlog is not read again for every send.
    // In a store other processes write, a later commit may carry an earlier
    // number: every pass reads it all.
    let mut seen_through = 0;
    let mut full = true;
    loop {
        if *stopped.borrow() {
            return Ended::Stopped;
        }
        if !shared.store.lead().await {
            return Ended::LostLead;
        }
        let full_pass = full || !shared.store.exclusive();
        let start = if full_pass { 0 } else { seen_through };
        if full {
            forget_unseen_groups(shared, &mut state).await;
            refresh_pending(shared).await;
        }
        let passed = pass(shared, routes, &mut state, stopped, start).await;
        shared.store.pass_done().await;
        let next_retry = match passed {
            Ok((next_retry, last)) => {
                seen_through = seen_through.max(last);
                next_retry
            }
            Err(err) => {
                tracing::error!(error = %err, "outbox: could not read or update the store; retrying");
                Some(Instant::now() + MAX_PAUSE)
            }
        };
        write_seen_groups(shared, &mut state).await;
        let wake = next_retry.unwrap_or_else(|| Instant::now() + IDLE_CHECK);
        full = tokio::select! {
            () = shared.committed.notified() => false,
            () = tokio::time::sleep_until(wake) => true,
            _ = stopped.changed() => return Ended::Stopped,
        };
        if !full {
            // Let the sends of the next moment join this pass: the file has
            // one connection, and a pass per send would stand in every
            // sender's way.
            tokio::time::sleep(GATHER).await;
        }
    }
}

/// Forgets the queue groups not seen for `forget_after`; what is held for
/// them is dead-lettered as the relay reaches it.
async fn forget_unseen_groups(shared: &Shared, state: &mut State) {
    let window = i64::try_from(shared.settings.forget_after.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms().saturating_sub(window);
    let stale: Vec<GroupAddress> = state
        .groups
        .iter()
        .filter(|(_, seen)| seen.seen_ms < cutoff)
        .map(|(group, _)| group.clone())
        .collect();
    for group in stale {
        match shared.store.forget_group(&group).await {
            Ok(()) => {
                tracing::warn!(group = %group.1, pattern = %group.0, "outbox: queue group not seen within forget_after; forgotten");
                state.groups.remove(&group);
            }
            Err(err) => tracing::error!(error = %err, "outbox: could not forget a queue group"),
        }
    }
}

/// Writes when groups were last seen, at most once a minute per group.
async fn write_seen_groups(shared: &Shared, state: &mut State) {
    for (group, seen) in &mut state.groups {
        if seen.seen_ms - seen.written_ms < SEEN_WRITE_EVERY_MS && seen.written_ms != 0 {
            continue;
        }
        match shared.store.remember_group(group, seen.seen_ms).await {
            Ok(()) => seen.written_ms = seen.seen_ms,
            Err(err) => {
                tracing::error!(error = %err, "outbox: could not remember a queue group");
                return;
            }
        }
    }
}

/// One pass over the events after `start` (all of them when 0): forwards
/// what it can, in order per line. Held-back lines are retried only in
/// a full pass, which sees their oldest event first. Returns when the
/// earliest held-back line may be tried again, and the last event seen.
async fn pass(
    shared: &Shared,
    routes: &Routes,
    state: &mut State,
    stopped: &watch::Receiver<bool>,
    start: i64,
) -> Result<(Option<Instant>, i64)> {
    let full = start == 0;
    let mut after = start;
    // Lines held back in this pass: their later events wait too (order).
    let mut waiting: HashSet<Line> = HashSet::new();
    loop {
        let page = shared.store.after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let mut done = Vec::new();
        for event in page {
            if *stopped.borrow() {
                break;
            }
            let line = (event.subject.clone(), event.group.clone());
            if waiting.contains(&line) {
                continue;
            }
            if let Some(hold) = state.held.get(&line) {
                if !full || Instant::now() < hold.until {
                    waiting.insert(line);
                    continue;
                }
            }
            let seq = event.seq;
            if state.delivered.contains(&seq) {
                done.push(seq);
                continue;
            }
            match forward(shared, routes, state, event).await {
                Forwarded::Done => {
                    state.delivered.insert(seq);
                    done.push(seq);
                }
                Forwarded::Split => {}
                Forwarded::HoldBack => {
                    let hold = state.held.entry(line.clone()).or_insert(Held {
                        until: Instant::now(),
                        failures: 0,
                    });
                    hold.failures += 1;
                    let pause = FIRST_PAUSE
                        .saturating_mul(1 << hold.failures.min(6).saturating_sub(1))
                        .min(MAX_PAUSE);
                    hold.until = Instant::now() + pause;
                    waiting.insert(line);
                }
            }
        }
        if !done.is_empty() {
            shared.store.remove(&done).await?;
            for seq in &done {
                state.delivered.remove(seq);
            }
            shared.settle(done.len() as u64);
        }
        if *stopped.borrow() {
            break;
        }
    }
    // Lines that went through (or have nothing left) are no longer held back.
    if full {
        state.held.retain(|line, _| waiting.contains(line));
    }
    Ok((state.held.values().map(|hold| hold.until).min(), after))
}

enum Forwarded {
    /// Delivered, or dead-lettered: remove it.
    Done,
    /// Delivered to some, and replaced in the file by its copies held for
    /// the queue groups that missed it.
    Split,
    /// Nobody took it, or the transport failed: hold its line back.
    HoldBack,
}

async fn forward(shared: &Shared, routes: &Routes, state: &mut State, event: Pending) -> Forwarded {
    let age_ms = now_ms().saturating_sub(event.created_ms);
    let max_age = &shared.settings.max_age;
    let Some(transport) = routes.transport(&event.subject) else {
        // The route table changed between runs and names a transport no longer configured.
        let reason = "its route names a transport that is not configured";
        return give_up(shared, routes, state, event, reason).await;
    };
    if u128::try_from(age_ms).unwrap_or(0) > max_age.as_millis() {
        let reason = match &event.group {
            Some((pattern, name)) => format!(
                "queue group `{name}` (on `{pattern}`) did not take it within max_age ({max_age:?})"
            ),
            None => format!("no recipient took it within max_age ({max_age:?})"),
        };
        return give_up(shared, routes, state, event, &reason).await;
    }
    if let Some(group) = event.group.clone() {
        return forward_to_group(shared, routes, state, transport.as_ref(), event, group).await;
    }
    let subject = event.subject.clone();
    let Some(live) = transport.live_groups(&subject) else {
        return match transport.publish_reaching(&subject, event.message).await {
            Ok(Reach::Nobody) => Forwarded::HoldBack,
            Ok(_) => Forwarded::Done,
            Err(err) => {
                tracing::debug!(%subject, error = %err, "outbox: forwarding failed; held for a retry");
                Forwarded::HoldBack
            }
        };
    };
    let now = now_ms();
    for group in live {
        state
            .groups
            .entry(group)
            .or_insert(Seen {
                seen_ms: now,
                written_ms: 0,
            })
            .seen_ms = now;
    }
    // Every group known for the subject; one with events already held for
    // it gets this one held too, behind them.
    let known: Vec<GroupAddress> = state
        .groups
        .keys()
        .filter(|(pattern, _)| subject::matches(pattern, &subject))
        .cloned()
        .collect();
    let queued = |group: &GroupAddress| {
        state
            .backlog
            .get(&(subject.clone(), group.clone()))
            .is_some_and(|held| *held > 0)
    };
    let targets: Vec<GroupAddress> = known.iter().filter(|g| !queued(g)).cloned().collect();
    let taken = match transport
        .publish_to(&subject, event.message.clone(), true, &targets)
        .await
    {
        Ok(taken) => taken,
        Err(err) => {
            tracing::debug!(%subject, error = %err, "outbox: forwarding failed; held for a retry");
            return Forwarded::HoldBack;
        }
    };
    let missed: Vec<GroupAddress> = known
        .into_iter()
        .filter(|group| !taken.groups.contains(group))
        .collect();
    match (missed.is_empty(), taken.plain || !taken.groups.is_empty()) {
        (true, true) => return Forwarded::Done,
        (true, false) => return Forwarded::HoldBack,
        (false, _) => {}
    }
    let copies: Vec<Entry> = missed
        .iter()
        .map(|group| Entry {
            subject: subject.clone(),
            message: event.message.clone(),
            created_ms: event.created_ms,
            group: Some(group.clone()),
        })
        .collect();
    if let Err(err) = shared.store.split(event.seq, &copies).await {
        // Nothing changed in the file: the whole event is retried later, so
        // the groups that took it now get it again (at least once).
        tracing::error!(%subject, error = %err, "outbox: could not hold an event for the queue groups that are away");
        return Forwarded::HoldBack;
    }
    shared
        .pending
        .fetch_add(copies.len() as u64 - 1, Ordering::Relaxed);
    for group in missed {
        tracing::debug!(%subject, group = %group.1, "outbox: queue group away; event held for it");
        *state.backlog.entry((subject.clone(), group)).or_insert(0) += 1;
    }
    Forwarded::Split
}

/// Forwards an event held for one queue group, to that group only.
async fn forward_to_group(
    shared: &Shared,
    routes: &Routes,
    state: &mut State,
    transport: &dyn Transport,
    event: Pending,
    group: GroupAddress,
) -> Forwarded {
    if !state.groups.contains_key(&group) {
        let reason = format!(
            "queue group `{}` (on `{}`) was forgotten: not seen within forget_after ({:?})",
            group.1, group.0, shared.settings.forget_after
        );
        return give_up(shared, routes, state, event, &reason).await;
    }
    let subject = event.subject.clone();
    let outcome = transport
        .publish_to(&subject, event.message, false, std::slice::from_ref(&group))
        .await;
    match outcome {
        Ok(taken) if taken.groups.contains(&group) => {
            if let Some(seen) = state.groups.get_mut(&group) {
                seen.seen_ms = now_ms();
            }
            drop_from_backlog(state, &subject, &group);
            Forwarded::Done
        }
        Ok(_) => Forwarded::HoldBack,
        Err(err) => {
            tracing::debug!(%subject, group = %group.1, error = %err, "outbox: forwarding to a queue group failed; held for a retry");
            Forwarded::HoldBack
        }
    }
}

fn drop_from_backlog(state: &mut State, subject: &str, group: &GroupAddress) {
    let key = (subject.to_owned(), group.clone());
    if let Some(held) = state.backlog.get_mut(&key) {
        *held = held.saturating_sub(1);
        if *held == 0 {
            state.backlog.remove(&key);
        }
    }
}

/// An event that will not be delivered: dead-lettered with `reason`.
async fn give_up(
    shared: &Shared,
    routes: &Routes,
    state: &mut State,
    event: Pending,
    reason: &str,
) -> Forwarded {
    if let Some(group) = &event.group {
        drop_from_backlog(state, &event.subject, group);
    }
    expire(shared, routes, event, reason).await
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
