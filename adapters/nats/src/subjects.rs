//! The subjects a connection publishes to, kept as async-nats `Subject`s:
//! a publish to a subject seen before shares its bytes (a reference count)
//! instead of copying the subject into a new allocation, and a second one
//! when async-nats clones it.

use std::collections::HashMap;
use std::sync::RwLock;

use async_nats::Subject;

/// Subjects kept at most; past that, each publish to a new subject copies
/// it as before, so a publisher to ever-new subjects keeps bounded memory.
const MAX_KEPT: usize = 4096;

/// The `Subject` of each subject published to so far (up to [`MAX_KEPT`]).
#[derive(Default)]
pub(super) struct Subjects {
    known: RwLock<HashMap<Box<str>, Subject, foldhash::fast::RandomState>>,
}

impl Subjects {
    /// `subject` as async-nats takes it.
    pub(super) fn get(&self, subject: &str) -> Subject {
        if let Some(known) = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(subject)
        {
            return known.clone();
        }
        let made = Subject::from(subject);
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        if known.len() < MAX_KEPT {
            known.insert(subject.into(), made.clone());
        }
        made
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_its_bound_and_still_answers() {
        let subjects = Subjects::default();
        for n in 0..MAX_KEPT + 10 {
            let subject = format!("orders.{n}");
            assert_eq!(subjects.get(&subject).as_str(), subject);
        }
        assert_eq!(subjects.known.read().unwrap().len(), MAX_KEPT);
        assert_eq!(subjects.get("orders.1").as_str(), "orders.1");
    }
}
