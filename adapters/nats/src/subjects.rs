//! The subjects a connection publishes to, kept as async-nats `Subject`s:
//! a publish to a subject seen before shares its bytes (a reference count)
//! instead of copying the subject into a new allocation, and a second one
//! when async-nats clones it.

use std::cell::RefCell;
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
        thread_local! {
            /// The subject this thread found last: a publisher mostly sends
            /// to one subject in a row, so most lookups compare its bytes.
            /// Any connection's: a `Subject` is only its text.
            static LAST: RefCell<Option<Subject>> = const { RefCell::new(None) };
        }
        let last = LAST
            .try_with(|last| {
                last.try_borrow()
                    .ok()?
                    .as_ref()
                    .filter(|last| last.as_str() == subject)
                    .cloned()
            })
            .ok()
            .flatten();
        if let Some(last) = last {
            return last;
        }
        let (found, kept) = self.find(subject);
        if kept {
            let _ = LAST.try_with(|last| {
                if let Ok(mut last) = last.try_borrow_mut() {
                    *last = Some(found.clone());
                }
            });
        }
        found
    }

    /// `subject` from the table all threads share, added if there is room;
    /// whether the table holds it.
    fn find(&self, subject: &str) -> (Subject, bool) {
        if let Some(known) = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(subject)
        {
            return (known.clone(), true);
        }
        let made = Subject::from(subject);
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        let kept = known.len() < MAX_KEPT;
        if kept {
            known.insert(subject.into(), made.clone());
        }
        (made, kept)
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
