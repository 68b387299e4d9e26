//! Per-key order on a concurrent route: events with the same `sb-key` run
//! one at a time, in arrival order, while other keys go on.

use std::collections::{HashMap, VecDeque};

/// Per-key order for concurrent routes: which keys have an event running,
/// and the events waiting behind each.
pub(super) struct KeyedQueue<T> {
    busy: HashMap<String, VecDeque<T>>,
    waiting: usize,
}

impl<T> KeyedQueue<T> {
    /// `Some(held)` to run it now (its key was free); `None` when it waits.
    pub(super) fn start_or_wait(&mut self, key: &str, held: T) -> Option<T> {
        match self.busy.get_mut(key) {
            Some(queue) => {
                queue.push_back(held);
                self.waiting += 1;
                None
            }
            None => {
                self.busy.insert(key.to_owned(), VecDeque::new());
                Some(held)
            }
        }
    }

    /// The next event of `key` once its running one finished; frees the key when none waits.
    pub(super) fn next_for(&mut self, key: &str) -> Option<T> {
        let queue = self.busy.get_mut(key)?;
        match queue.pop_front() {
            Some(held) => {
                self.waiting -= 1;
                Some(held)
            }
            None => {
                self.busy.remove(key);
                None
            }
        }
    }
}

impl<T> Default for KeyedQueue<T> {
    fn default() -> Self {
        KeyedQueue {
            busy: HashMap::new(),
            waiting: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_key_queues_in_order_and_frees_when_empty() {
        let mut keys = KeyedQueue::default();
        assert_eq!(keys.start_or_wait("a", 1), Some(1));
        assert_eq!(keys.start_or_wait("a", 2), None);
        assert_eq!(keys.start_or_wait("b", 3), Some(3));
        assert_eq!(keys.start_or_wait("a", 4), None);
        assert_eq!(keys.next_for("a"), Some(2));
        assert_eq!(keys.next_for("a"), Some(4));
        assert_eq!(keys.next_for("a"), None);
        assert_eq!(keys.start_or_wait("a", 5), Some(5));
    }
}
