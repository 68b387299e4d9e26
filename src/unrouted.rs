//! Events that reached nobody: counted per subject, logged at most once per
//! subject per interval with the count since the last line, and shown in
//! health for a while after the last one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one log line per subject per this interval.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// How long health stays `degraded` after the last event that reached nobody.
const DEGRADED_FOR: Duration = Duration::from_secs(10);
/// Subjects tracked one by one; beyond, they share one entry (bounded memory).
const MAX_SUBJECTS: usize = 1024;
/// The entry shared by subjects beyond [`MAX_SUBJECTS`].
const OTHER_SUBJECTS: &str = "(other subjects)";

/// The unrouted events of one bus.
#[derive(Default)]
pub(crate) struct Unrouted {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// foldhash: every event that reaches nobody looks its subject up here.
    subjects: HashMap<String, Seen, foldhash::fast::RandomState>,
    total: u64,
    last: Option<Instant>,
}

#[derive(Default)]
struct Seen {
    unreported: u64,
    last_report: Option<Instant>,
}

impl Unrouted {
    /// An event published to `subject` on `route` reached no subscriber.
    pub(crate) fn record(&self, subject: &str, route: &str, backend: &'static str) {
        #[cfg(feature = "metrics")]
        metrics::counter!("switchboard_unrouted_total", "subject" => subject.to_owned())
            .increment(1);
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.total += 1;
        state.last = Some(now);
        let known = state.subjects.contains_key(subject);
        let key = match known || state.subjects.len() < MAX_SUBJECTS {
            true => subject,
            false => OTHER_SUBJECTS,
        };
        // The subject is copied only the first time it goes unrouted.
        if !known {
            state.subjects.entry(key.to_owned()).or_default();
        }
        let Some(seen) = state.subjects.get_mut(key) else {
            return;
        };
        seen.unreported += 1;
        if seen
            .last_report
            .is_none_or(|at| now.duration_since(at) >= REPORT_EVERY)
        {
            tracing::warn!(
                %subject,
                route,
                backend,
                events = seen.unreported,
                "events published to this subject reached no subscriber and were not delivered \
                 (nobody is subscribed now); set `on_no_subscriber = \"error\"` on the route to fail such sends"
            );
            seen.last_report = Some(now);
            seen.unreported = 0;
        }
    }

    /// How many events reached nobody so far.
    pub(crate) fn total(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Why health is degraded, while such events are recent.
    pub(crate) fn degraded(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let last = state.last?;
        if last.elapsed() >= DEGRADED_FOR {
            return None;
        }
        let mut subjects: Vec<&str> = state.subjects.keys().map(String::as_str).collect();
        subjects.sort_unstable();
        let shown: Vec<String> = subjects.iter().take(3).map(|s| format!("`{s}`")).collect();
        let more = match subjects.len().saturating_sub(shown.len()) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        Some(format!(
            "{} event(s) reached no subscriber (subjects {}{more}), the last {:.1} s ago",
            state.total,
            shown.join(", "),
            last.elapsed().as_secs_f64()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_bounds_subjects() {
        let unrouted = Unrouted::default();
        assert_eq!(unrouted.degraded(), None);
        for n in 0..MAX_SUBJECTS + 10 {
            unrouted.record(&format!("s.{n}"), "s.*", "memory");
        }
        unrouted.record("s.0", "s.*", "memory");
        assert_eq!(unrouted.total(), MAX_SUBJECTS as u64 + 11);
        let state = unrouted.state.lock().unwrap();
        assert_eq!(state.subjects.len(), MAX_SUBJECTS + 1);
        assert_eq!(
            state.subjects[OTHER_SUBJECTS].unreported, 9,
            "the first was logged"
        );
        drop(state);
        let why = unrouted.degraded().unwrap();
        assert!(
            why.contains("reached no subscriber") && why.contains("more"),
            "{why}"
        );
    }
}
