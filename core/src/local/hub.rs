//! The routing table of an in-process hub: who is subscribed to what, swapped
//! copy-on-write so publishers read it without a lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use tokio::sync::{mpsc, watch};

use crate::incoming::Incoming;
use crate::inline::InlineSlot;
use crate::subject;

/// A subscribed (pattern, queue group) pair.
pub type Interest = (Arc<str>, Option<Arc<str>>);

/// One subscription: its queue, and the route answering its requests inline, if any.
#[derive(Clone)]
pub struct Member {
    pub queue: mpsc::Sender<Incoming>,
    pub inline: Arc<InlineSlot>,
}

/// A queue group on one pattern: each message goes to one member, round robin.
pub struct Group {
    pub name: Arc<str>,
    pub members: Vec<Member>,
    /// Shared across routing-table rebuilds so the rotation continues.
    pub cursor: Arc<AtomicUsize>,
}

/// Everyone subscribed to one subject or pattern.
pub struct Target {
    /// The subject or pattern subscribed to.
    pub pattern: Arc<str>,
    /// The subject, shared by every delivery to it (no allocation per message);
    /// `None` for wildcard patterns.
    pub subject: Option<Arc<str>>,
    pub plain: Vec<Member>,
    pub groups: Vec<Group>,
}

/// An immutable routing table; publishers read a snapshot without holding a lock.
#[derive(Default)]
pub struct Routes {
    /// Keyed with foldhash: every delivery looks its subject up here, and SipHash's
    /// DoS resistance buys nothing for subjects the service itself subscribed to.
    pub exact: HashMap<Arc<str>, Target, foldhash::fast::RandomState>,
    pub patterns: Vec<(Arc<str>, Target)>,
}

impl Routes {
    /// Every target whose subject or pattern matches `subject`.
    pub fn matching<'a>(&'a self, subject: &'a str) -> impl Iterator<Item = &'a Target> + 'a {
        self.exact.get(subject).into_iter().chain(
            self.patterns
                .iter()
                .filter(move |(pattern, _)| subject::matches(pattern, subject))
                .map(|(_, target)| target),
        )
    }
}

struct Registration {
    id: u64,
    owner: u64,
    pattern: Arc<str>,
    group: Option<Arc<str>>,
    member: Member,
}

#[derive(Default)]
struct Registry {
    subscriptions: Vec<Registration>,
    cursors: HashMap<(Arc<str>, Arc<str>), Arc<AtomicUsize>>,
}

/// An in-process broker: a registry of subscriptions and the routing table built from it.
pub struct Hub {
    registry: Mutex<Registry>,
    routes: RwLock<Arc<Routes>>,
    next_id: AtomicU64,
    /// Bumped on every subscribe and unsubscribe, for those who mirror the table elsewhere.
    generation: watch::Sender<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            registry: Mutex::default(),
            routes: RwLock::default(),
            next_id: AtomicU64::new(0),
            generation: watch::Sender::new(0),
        }
    }
}

impl Hub {
    /// The hub called `name`, shared by every live connection that uses it.
    pub fn named(name: &str) -> Arc<Hub> {
        static HUBS: OnceLock<Mutex<HashMap<String, Weak<Hub>>>> = OnceLock::new();
        let mut hubs = HUBS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(hub) = hubs.get(name).and_then(Weak::upgrade) {
            return hub;
        }
        hubs.retain(|_, hub| hub.strong_count() > 0);
        let hub = Arc::new(Hub::default());
        hubs.insert(name.to_owned(), Arc::downgrade(&hub));
        hub
    }

    /// A fresh id for a connection or subscription.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The current routing table.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Adds a subscription; it is live when this returns.
    pub fn add(&self, owner: u64, pattern: &str, group: Option<&str>, member: Member) -> u64 {
        let id = self.next_id();
        self.update(|registry| {
            registry.subscriptions.push(Registration {
                id,
                owner,
                pattern: pattern.into(),
                group: group.map(Into::into),
                member,
            })
        });
        id
    }

    /// Removes one subscription.
    pub fn remove(&self, id: u64) {
        self.update(|registry| registry.subscriptions.retain(|s| s.id != id));
    }

    /// Removes every subscription of one connection.
    pub fn remove_owner(&self, owner: u64) {
        self.update(|registry| registry.subscriptions.retain(|s| s.owner != owner));
    }

    /// The distinct (pattern, group) pairs subscribed, with the generation they belong to.
    pub fn subscriptions(&self) -> (u64, Vec<Interest>) {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut pairs: Vec<_> = registry
            .subscriptions
            .iter()
            .map(|s| (s.pattern.clone(), s.group.clone()))
            .collect();
        pairs.sort();
        pairs.dedup();
        (*self.generation.borrow(), pairs)
    }

    /// Notified whenever the set of subscriptions changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn update(&self, change: impl FnOnce(&mut Registry)) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut registry);
        let routes = Arc::new(build_routes(&mut registry));
        // Swapped while the registry is still locked, so tables are installed in order.
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = routes;
        self.generation.send_modify(|generation| *generation += 1);
    }
}

fn build_routes(registry: &mut Registry) -> Routes {
    type Building = (Target, HashMap<Arc<str>, usize>);
    let mut targets: HashMap<Arc<str>, Building> = HashMap::new();
    let mut cursors = HashMap::new();
    for registration in &registry.subscriptions {
        let (target, group_index) =
            targets
                .entry(registration.pattern.clone())
                .or_insert_with(|| {
                    let target = Target {
                        pattern: registration.pattern.clone(),
                        subject: None,
                        plain: Vec::new(),
                        groups: Vec::new(),
                    };
                    (target, HashMap::new())
                });
        let member = registration.member.clone();
        let Some(group) = &registration.group else {
            target.plain.push(member);
            continue;
        };
        let index = *group_index.entry(group.clone()).or_insert_with(|| {
            let key = (registration.pattern.clone(), group.clone());
            let cursor = registry.cursors.get(&key).cloned().unwrap_or_default();
            cursors.insert(key, cursor.clone());
            target.groups.push(Group {
                name: group.clone(),
                members: Vec::new(),
                cursor,
            });
            target.groups.len() - 1
        });
        target.groups[index].members.push(member);
    }
    // Keeps the rotation of groups that still exist and forgets the others.
    registry.cursors = cursors;
    let mut routes = Routes::default();
    for (pattern, (mut target, _)) in targets {
        if subject::is_pattern(&pattern) {
            routes.patterns.push((pattern, target));
        } else {
            target.subject = Some(pattern.clone());
            routes.exact.insert(pattern, target);
        }
    }
    routes
}
