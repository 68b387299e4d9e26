//! Repeated runs: every measured figure as median with its min–max over the
//! runs, and the pairs whose ranges overlap, so no conclusion is drawn from noise.

use serde::Serialize;
use serde_json::{Map, Value};

/// Fields that name a point rather than measure it: equal in every run.
const KEY_FIELDS: &[&str] = &[
    "backend",
    "style",
    "depth",
    "messages",
    "consumers",
    "outage_ms",
    "offered_per_s",
    "due",
];

/// One figure over the runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The median and range of `values` (not empty).
    pub fn of(values: &[f64]) -> Spread {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Spread {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }

    /// Whether the two ranges share a value: then the runs cannot tell the two apart.
    pub fn overlaps(&self, other: &Spread) -> bool {
        self.min <= other.max && other.min <= self.max
    }

    /// Reads a spread written by [`summarize`].
    pub fn from_value(value: &Value) -> Option<Spread> {
        Some(Spread {
            median: value.get("median")?.as_f64()?,
            min: value.get("min")?.as_f64()?,
            max: value.get("max")?.as_f64()?,
        })
    }
}

/// The rows of every run, point by point: key fields as they are, every
/// other number as `{median, min, max}`. Runs list the same points in the
/// same order (the runner is deterministic in what it measures).
pub fn summarize<T: Serialize>(runs: &[&[T]]) -> Result<Vec<Value>, String> {
    let runs: Vec<Vec<Value>> = runs
        .iter()
        .map(|rows| rows.iter().map(serde_json::to_value).collect())
        .collect::<Result<_, _>>()
        .map_err(|err| err.to_string())?;
    let Some(first) = runs.first() else {
        return Ok(Vec::new());
    };
    let mut summary = Vec::with_capacity(first.len());
    for (index, point) in first.iter().enumerate() {
        let Value::Object(fields) = point else {
            return Err("a row is not a JSON object".into());
        };
        let mut row = Map::new();
        for (name, value) in fields {
            if KEY_FIELDS.contains(&name.as_str()) || !value.is_number() {
                row.insert(name.clone(), value.clone());
                continue;
            }
            let values: Vec<f64> = runs
                .iter()
                .map(|run| run.get(index).and_then(|r| r[name].as_f64()))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("run without `{name}` at point {index}"))?;
            let spread = serde_json::to_value(Spread::of(&values)).map_err(|e| e.to_string())?;
            row.insert(name.clone(), spread);
        }
        summary.push(Value::Object(row));
    }
    Ok(summary)
}

/// A field's spread; a plain number is a spread of one value.
pub fn spread(row: &Value, field: &str) -> Option<Spread> {
    let value = &row[field];
    Spread::from_value(value).or_else(|| value.as_f64().map(|v| Spread::of(&[v])))
}

/// Lines naming the compared pairs whose ranges overlap over the runs: sync
/// against async at each chain depth (end-to-end p50), and one event against
/// M requests in the fan-out (p50).
pub fn overlaps(chain: &[Value], fanout: &[Value]) -> Vec<String> {
    let mut lines = Vec::new();
    for sync in chain.iter().filter(|r| r["style"] == "sync") {
        let twin = chain.iter().find(|r| {
            r["style"] == "async" && r["backend"] == sync["backend"] && r["depth"] == sync["depth"]
        });
        let Some(twin) = twin else { continue };
        let (Some(a), Some(b)) = (
            spread(sync, "end_to_end_p50_us"),
            spread(twin, "end_to_end_p50_us"),
        ) else {
            continue;
        };
        if a.overlaps(&b) {
            lines.push(format!(
                "{} chain of {}: sync {} and async {} ms end-to-end p50 overlap over the runs; no conclusion from this pair",
                sync["backend"].as_str().unwrap_or("?"),
                sync["depth"],
                range_ms(&a),
                range_ms(&b)
            ));
        }
    }
    for row in fanout {
        let (Some(a), Some(b)) = (spread(row, "event_p50_us"), spread(row, "requests_p50_us"))
        else {
            continue;
        };
        if a.overlaps(&b) {
            lines.push(format!(
                "{} fan-out: one event {} and M requests {} ms p50 overlap over the runs; no conclusion from this pair",
                row["backend"].as_str().unwrap_or("?"),
                range_ms(&a),
                range_ms(&b)
            ));
        }
    }
    lines
}

fn range_ms(spread: &Spread) -> String {
    format!("{:.2}–{:.2}", spread.min / 1000.0, spread.max / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        backend: &'static str,
        depth: usize,
        p50_us: u64,
    }

    #[test]
    fn median_and_range_per_point() {
        let run = |p50_us| {
            vec![Row {
                backend: "nats",
                depth: 2,
                p50_us,
            }]
        };
        let runs = [run(30), run(10), run(20), run(1000)];
        let summary = summarize(&runs.iter().map(Vec::as_slice).collect::<Vec<_>>()).unwrap();
        assert_eq!(summary[0]["backend"], "nats");
        assert_eq!(summary[0]["depth"], 2);
        let p50 = Spread::from_value(&summary[0]["p50_us"]).unwrap();
        assert_eq!((p50.median, p50.min, p50.max), (25.0, 10.0, 1000.0));
    }

    #[test]
    fn ranges_that_share_a_value_overlap() {
        let a = Spread::of(&[1.0, 3.0]);
        assert!(a.overlaps(&Spread::of(&[3.0, 5.0])));
        assert!(!a.overlaps(&Spread::of(&[3.5, 5.0])));
    }
}
