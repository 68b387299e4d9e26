//! What this service knows of its peers: their addresses and subscriptions, learned
//! from the snapshots they send, and the routing decisions made from them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::local::Interest;
use crate::subject;

/// One subscription as peers see it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(super) struct Advertised {
    /// Subject or pattern.
    pub subject: String,
    /// Queue group, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A service's full list of subscriptions; exchanged between peers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Snapshot {
    /// The base URL the service is reached at.
    pub service: String,
    /// Changes at every start of the service, so a restart is never mistaken for old news.
    pub incarnation: u64,
    /// Increases with every change of subscriptions within one incarnation.
    pub generation: u64,
    /// Every (subject, group) subscribed.
    pub subscriptions: Vec<Advertised>,
    /// The peers the service knows, so a service configured with one seed learns the rest.
    #[serde(default)]
    pub peers: Vec<String>,
}

impl Snapshot {
    /// This service's snapshot from its local interests.
    pub fn of(
        service: &str,
        incarnation: u64,
        (generation, interests): (u64, Vec<Interest>),
        peers: Vec<String>,
    ) -> Self {
        Snapshot {
            service: service.to_owned(),
            incarnation,
            generation,
            subscriptions: interests
                .into_iter()
                .map(|(pattern, group)| Advertised {
                    subject: pattern.to_string(),
                    group: group.map(|g| g.to_string()),
                })
                .collect(),
            peers,
        }
    }
}

/// Learned peers that stay unreachable this many sync rounds in a row are forgotten.
const FORGET_AFTER_FAILURES: u32 = 10;

#[derive(Default)]
struct Peer {
    version: Option<(u64, u64)>,
    subscriptions: Vec<Advertised>,
    reachable: bool,
    /// Configured peers are never forgotten; learned ones are, once long unreachable.
    configured: bool,
    failures: u32,
}

/// Who receives a delivery: this service or a peer (by base URL).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Holder {
    Local,
    Peer(String),
}

/// One delivery of an event: to whom, whether to its plain subscribers, and which groups.
#[derive(Debug, Clone, Default)]
pub(super) struct Delivery {
    pub plain: bool,
    pub groups: Vec<(String, String)>,
}

/// How an event is delivered: one delivery per holder, and every holder of each
/// (pattern, group) so a failed member can be replaced.
#[derive(Debug, Default)]
pub(super) struct EventPlan {
    pub deliveries: BTreeMap<Holder, Delivery>,
    pub group_holders: BTreeMap<(String, String), Vec<Holder>>,
}

/// The peers and their subscriptions.
pub(super) struct Directory {
    self_url: String,
    peers: RwLock<BTreeMap<String, Peer>>,
    rotation: AtomicUsize,
}

impl Directory {
    /// A directory that starts with the configured peers.
    pub fn new(self_url: String, configured: &[String]) -> Self {
        let peers = configured
            .iter()
            .filter(|url| **url != self_url)
            .map(|url| {
                let peer = Peer {
                    configured: true,
                    ..Peer::default()
                };
                (url.clone(), peer)
            })
            .collect();
        Directory {
            self_url,
            peers: RwLock::new(peers),
            rotation: AtomicUsize::new(0),
        }
    }

    /// Every known peer's base URL.
    pub fn peers(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Peers never heard from, or unreachable when last tried.
    pub fn unsynced(&self) -> Vec<String> {
        self.read()
            .iter()
            .filter(|(_, peer)| !peer.reachable)
            .map(|(url, _)| url.clone())
            .collect()
    }

    /// Takes in a peer's snapshot (learning the peer if it is new); older news is ignored.
    pub fn merge(&self, snapshot: Snapshot) {
        if snapshot.service == self.self_url {
            return;
        }
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        for url in &snapshot.peers {
            if *url != self.self_url {
                peers.entry(url.clone()).or_default();
            }
        }
        let peer = peers.entry(snapshot.service).or_default();
        peer.reachable = true;
        peer.failures = 0;
        let version = (snapshot.incarnation, snapshot.generation);
        if peer.version.is_none_or(|known| known < version) {
            peer.version = Some(version);
            peer.subscriptions = snapshot.subscriptions;
        }
    }

    /// Records that a peer did not answer; it is tried again at the next sync,
    /// and a learned (not configured) peer that keeps failing is forgotten.
    pub fn mark_unreachable(&self, url: &str) {
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        if let Some(peer) = peers.get_mut(url) {
            peer.reachable = false;
            peer.failures += 1;
            if !peer.configured && peer.failures >= FORGET_AFTER_FAILURES {
                peers.remove(url);
            }
        }
    }

    /// The peers that serve `subject`, rotated so repeated requests spread over them.
    pub fn responders(&self, subject: &str) -> Vec<String> {
        let mut found: Vec<String> = self
            .read()
            .iter()
            .filter(|(_, peer)| {
                peer.subscriptions
                    .iter()
                    .any(|s| subject::matches(&s.subject, subject))
            })
            .map(|(url, _)| url.clone())
            .collect();
        if !found.is_empty() {
            let start = self.rotation.fetch_add(1, Ordering::Relaxed) % found.len();
            found.rotate_left(start);
        }
        found
    }

    /// Plans an event: every plain subscriber's holder, and one holder per
    /// (pattern, group) across this service and its peers.
    pub fn plan_event(&self, subject: &str, local: &[Interest]) -> EventPlan {
        let mut plan = EventPlan::default();
        let mut note = |holder: &Holder, pattern: &str, group: Option<&str>| {
            if !subject::matches(pattern, subject) {
                return;
            }
            match group {
                None => plan.deliveries.entry(holder.clone()).or_default().plain = true,
                Some(group) => plan
                    .group_holders
                    .entry((pattern.to_owned(), group.to_owned()))
                    .or_default()
                    .push(holder.clone()),
            }
        };
        for (pattern, group) in local {
            note(&Holder::Local, pattern, group.as_deref());
        }
        for (url, peer) in self.read().iter() {
            let holder = Holder::Peer(url.clone());
            for advertised in &peer.subscriptions {
                note(&holder, &advertised.subject, advertised.group.as_deref());
            }
        }
        for (key, holders) in &mut plan.group_holders {
            holders.dedup();
            let chosen =
                holders[self.rotation.fetch_add(1, Ordering::Relaxed) % holders.len()].clone();
            plan.deliveries
                .entry(chosen)
                .or_default()
                .groups
                .push(key.clone());
        }
        plan
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Peer>> {
        self.peers.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(
        service: &str,
        incarnation: u64,
        generation: u64,
        subs: &[(&str, Option<&str>)],
    ) -> Snapshot {
        Snapshot {
            service: service.into(),
            incarnation,
            generation,
            subscriptions: subs
                .iter()
                .map(|(s, g)| Advertised {
                    subject: (*s).into(),
                    group: g.map(Into::into),
                })
                .collect(),
            peers: vec![],
        }
    }

    #[test]
    fn peers_of_peers_are_learned_and_dead_learned_peers_forgotten() {
        let dir = Directory::new("http://me".into(), &["http://seed".into()]);
        let mut from_seed = snapshot("http://seed", 1, 1, &[]);
        from_seed.peers = vec!["http://other".into(), "http://me".into()];
        dir.merge(from_seed);
        assert_eq!(dir.peers(), ["http://other", "http://seed"]);
        assert_eq!(dir.unsynced(), ["http://other"]);
        for _ in 0..FORGET_AFTER_FAILURES {
            dir.mark_unreachable("http://other");
            dir.mark_unreachable("http://seed");
        }
        assert_eq!(
            dir.peers(),
            ["http://seed"],
            "configured peers stay, dead learned ones go"
        );
    }

    #[test]
    fn newer_snapshots_win_and_restarts_count_as_newer() {
        let dir = Directory::new("http://me".into(), &["http://a".into()]);
        assert_eq!(dir.unsynced(), ["http://a"]);
        dir.merge(snapshot("http://a", 1, 5, &[("x", None)]));
        dir.merge(snapshot("http://a", 1, 4, &[]));
        assert_eq!(dir.responders("x"), ["http://a"]);
        dir.merge(snapshot("http://a", 2, 0, &[]));
        assert!(dir.responders("x").is_empty());
        dir.merge(snapshot("http://me", 9, 9, &[("x", None)]));
        assert_eq!(dir.peers(), ["http://a"]);
        assert!(dir.unsynced().is_empty());
    }

    #[test]
    fn each_group_gets_one_holder_across_services() {
        let dir = Directory::new("http://me".into(), &[]);
        dir.merge(snapshot(
            "http://a",
            1,
            1,
            &[("orders.*", Some("billing")), ("orders.*", None)],
        ));
        dir.merge(snapshot("http://b", 1, 1, &[("orders.*", Some("billing"))]));
        let local = vec![(
            std::sync::Arc::from("orders.*"),
            Some(std::sync::Arc::from("billing")),
        )];
        let mut chosen = BTreeMap::new();
        for _ in 0..30 {
            let plan = dir.plan_event("orders.created", &local);
            let with_group: Vec<_> = plan
                .deliveries
                .iter()
                .filter(|(_, d)| !d.groups.is_empty())
                .map(|(h, _)| h.clone())
                .collect();
            assert_eq!(with_group.len(), 1, "{plan:?}");
            *chosen.entry(with_group[0].clone()).or_insert(0) += 1;
            assert!(plan.deliveries[&Holder::Peer("http://a".into())].plain);
            assert_eq!(plan.group_holders.values().next().unwrap().len(), 3);
        }
        assert_eq!(
            chosen.len(),
            3,
            "the group's work is not spread: {chosen:?}"
        );
        assert!(dir.plan_event("payments.x", &local).deliveries.is_empty());
    }
}
