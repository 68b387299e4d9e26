//! Findings: per claim about the synchronous style and per backend, whether
//! the measurements support it, with the numbers. A claim counts as shown
//! only when the min–max ranges over the runs do not overlap.

use serde::Serialize;
use serde_json::Value;

use crate::spread::{spread, Spread};

/// One claim on one backend.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub claim: &'static str,
    pub backend: String,
    /// `supported`, `not supported`, or `not shown` (ranges overlap).
    pub verdict: &'static str,
    pub evidence: String,
}

const AUTONOMY: &str =
    "sync costs autonomy: the front service cannot finish its own work while a dependency is down";
const RESILIENCE: &str = "sync costs resilience: one failed service makes its callers fail";
const LATENCY: &str = "chains of sync requests make the system slow";
const CAPACITY: &str =
    "under rising load, a sync chain saturates at a lower offered rate than an async one";

/// Every claim on every backend that ran both styles.
pub fn findings(chain: &[Value], outage: &[Value], capacity: &[Value]) -> Vec<Finding> {
    let mut findings = Vec::new();
    // Each backend once, in the order it ran (its rows need not be adjacent).
    let mut backends: Vec<&str> = Vec::new();
    for backend in outage.iter().filter_map(|r| r["backend"].as_str()) {
        if !backends.contains(&backend) {
            backends.push(backend);
        }
    }
    for backend in backends {
        let row = |rows: &'_ [Value], style: &str| -> Option<Value> {
            rows.iter()
                .find(|r| r["backend"] == backend && r["style"] == style)
                .cloned()
        };
        let (Some(sync), Some(r#async)) = (row(outage, "sync"), row(outage, "async")) else {
            continue;
        };
        if let (Some(s), Some(a)) = (
            spread(&sync, "own_work_share"),
            spread(&r#async, "own_work_share"),
        ) {
            findings.push(Finding {
                claim: AUTONOMY,
                backend: backend.into(),
                verdict: verdict(a.min > s.max, a.overlaps(&s)),
                evidence: format!(
                    "own work done while the dependency was stopped: sync {}, async {}",
                    percent(&s),
                    percent(&a)
                ),
            });
        }
        if let (Some(s), Some(a), Some(lost)) = (
            spread(&sync, "caller_errors"),
            spread(&r#async, "caller_errors"),
            spread(&r#async, "lost"),
        ) {
            // The same outage with the outbox, where the runner measured it.
            let outbox_row = |style: &str| {
                outage.iter().find(|r| {
                    r["backend"] == format!("{backend}+outbox").as_str() && r["style"] == style
                })
            };
            let with_outbox = outbox_row("async")
                .and_then(|row| spread(row, "lost"))
                .map(|lost| format!(" (with the outbox: lost {})", count(&lost)))
                .unwrap_or_default();
            // Sync with `fallback = "async"`, where the runner measured it.
            let with_fallback = outbox_row("sync+fallback")
                .and_then(|row| {
                    let errors = spread(row, "caller_errors")?;
                    let lost = spread(row, "lost")?;
                    let drained = spread(row, "drained_after_ms")?;
                    Some(format!(
                        "; sync with `fallback = \"async\"`: caller errors {}, lost {}, every deferred job done {} ms after the restart",
                        count(&errors),
                        count(&lost),
                        millis(&drained)
                    ))
                })
                .unwrap_or_default();
            let caveat = match lost.max > 0.0 {
                true => format!(
                    "; but async lost {} accepted job(s) on this backend, which does not keep events for a stopped consumer{with_outbox}",
                    count(&lost)
                ),
                false => "; async lost nothing".into(),
            };
            findings.push(Finding {
                claim: RESILIENCE,
                backend: backend.into(),
                verdict: verdict(s.min > a.max, s.overlaps(&a)),
                evidence: format!(
                    "caller errors during the outage: sync {}, async {}{caveat}{with_fallback}",
                    count(&s),
                    count(&a)
                ),
            });
        }
        let depths = |style: &str| -> Vec<&Value> {
            let mut rows: Vec<&Value> = chain
                .iter()
                .filter(|r| r["backend"] == backend && r["style"] == style)
                .collect();
            rows.sort_by_key(|r| r["depth"].as_u64());
            rows
        };
        let (sync_chain, async_chain) = (depths("sync"), depths("async"));
        if let (Some(first), Some(last), Some(async_last)) =
            (sync_chain.first(), sync_chain.last(), async_chain.last())
        {
            if let (Some(one), Some(deep), Some(async_caller), Some(sync_caller)) = (
                spread(first, "end_to_end_p50_us"),
                spread(last, "end_to_end_p50_us"),
                spread(async_last, "caller_p50_us"),
                spread(last, "caller_p50_us"),
            ) {
                let grows = deep.min > one.max;
                let caller_waits = sync_caller.min > async_caller.max;
                findings.push(Finding {
                    claim: LATENCY,
                    backend: backend.into(),
                    verdict: verdict(
                        grows && caller_waits,
                        deep.overlaps(&one) || sync_caller.overlaps(&async_caller),
                    ),
                    evidence: format!(
                        "end-to-end p50 with 1 service {} ms, with {} {} ms; the caller waits {} ms in sync, {} ms in async",
                        ms(&one),
                        last["depth"],
                        ms(&deep),
                        ms(&sync_caller),
                        ms(&async_caller)
                    ),
                });
            }
        }
        if let (Some(s), Some(a)) = (
            row(capacity, "sync").and_then(|r| spread(&r, "sustained_per_s")),
            row(capacity, "async").and_then(|r| spread(&r, "sustained_per_s")),
        ) {
            findings.push(Finding {
                claim: CAPACITY,
                backend: backend.into(),
                verdict: verdict(a.min > s.max, a.overlaps(&s)),
                evidence: format!(
                    "highest offered rate kept up with (jobs/s, chain of 2): sync {}, async {}",
                    count(&s),
                    count(&a)
                ),
            });
        }
    }
    findings
}

fn verdict(shown: bool, overlaps: bool) -> &'static str {
    match (shown, overlaps) {
        (true, _) => "supported",
        (false, true) => "not shown (ranges overlap)",
        (false, false) => "not supported",
    }
}

fn percent(s: &Spread) -> String {
    match s.min == s.max {
        true => format!("{:.0} %", s.median * 100.0),
        false => format!(
            "{:.0} % ({:.0}–{:.0})",
            s.median * 100.0,
            s.min * 100.0,
            s.max * 100.0
        ),
    }
}

fn count(s: &Spread) -> String {
    match s.min == s.max {
        true => format!("{:.0}", s.median),
        false => format!("{:.0} ({:.0}–{:.0})", s.median, s.min, s.max),
    }
}

/// Milliseconds as counted, where `u64::MAX` means it never happened.
fn millis(s: &Spread) -> String {
    let shown = |v: f64| match v >= u64::MAX as f64 {
        true => "never".to_owned(),
        false => format!("{v:.0}"),
    };
    match s.min == s.max {
        true => shown(s.median),
        false => format!("{} ({}–{})", shown(s.median), shown(s.min), shown(s.max)),
    }
}

fn ms(s: &Spread) -> String {
    match s.min == s.max {
        true => format!("{:.2}", s.median / 1000.0),
        false => format!(
            "{:.2} ({:.2}–{:.2})",
            s.median / 1000.0,
            s.min / 1000.0,
            s.max / 1000.0
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outage(style: &str, share: [f64; 2], errors: [f64; 2]) -> Value {
        let spread = |v: [f64; 2]| json!({"median": (v[0] + v[1]) / 2.0, "min": v[0], "max": v[1]});
        json!({"backend": "nats", "style": style, "own_work_share": spread(share),
               "caller_errors": spread(errors), "lost": spread([0.0, 0.0])})
    }

    #[test]
    fn a_claim_holds_only_when_the_ranges_part() {
        let capacity = |style: &str, rates: [f64; 2]| {
            json!({"backend": "nats", "style": style,
                   "sustained_per_s": {"median": rates[1], "min": rates[0], "max": rates[1]}})
        };
        let parted = findings(
            &[],
            &[
                outage("sync", [0.0, 0.05], [20.0, 25.0]),
                outage("async", [1.0, 1.0], [0.0, 0.0]),
            ],
            &[
                capacity("sync", [1000.0, 2000.0]),
                capacity("async", [4000.0, 8000.0]),
            ],
        );
        assert_eq!(parted[0].claim, AUTONOMY);
        assert_eq!(parted[0].verdict, "supported");
        assert_eq!(parted[1].verdict, "supported");
        assert_eq!(parted[2].claim, CAPACITY);
        assert_eq!(parted[2].verdict, "supported");
        let overlapping = findings(
            &[],
            &[
                outage("sync", [0.5, 0.9], [0.0, 3.0]),
                outage("async", [0.8, 1.0], [0.0, 0.0]),
            ],
            &[
                capacity("sync", [1000.0, 4000.0]),
                capacity("async", [4000.0, 8000.0]),
            ],
        );
        assert_eq!(overlapping[0].verdict, "not shown (ranges overlap)");
        assert_eq!(overlapping[1].verdict, "not shown (ranges overlap)");
        assert_eq!(overlapping[2].verdict, "not shown (ranges overlap)");
    }

    #[test]
    fn the_fallback_row_is_evidence_for_resilience() {
        let mut fallback = outage("sync+fallback", [1.0, 1.0], [0.0, 0.0]);
        fallback["backend"] = json!("nats+outbox");
        fallback["drained_after_ms"] =
            json!({"median": 130.0, "min": 120.0, "max": u64::MAX as f64});
        let found = findings(
            &[],
            &[
                outage("sync", [0.0, 0.05], [20.0, 25.0]),
                outage("async", [1.0, 1.0], [0.0, 0.0]),
                fallback,
            ],
            &[],
        );
        assert_eq!(found[1].claim, RESILIENCE);
        assert!(
            found[1].evidence.ends_with(
                "sync with `fallback = \"async\"`: caller errors 0, lost 0, every deferred job done 130 (120–never) ms after the restart"
            ),
            "{}",
            found[1].evidence
        );
    }
}
