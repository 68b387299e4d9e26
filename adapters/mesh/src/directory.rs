//! What this service knows of its peers: their addresses and subscriptions, learned
//! from the snapshots they send, and the routing decisions made from them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use switchboard_core::local::Interest;
use switchboard_core::subject;

/// One subscription as peers see it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Advertised {
    /// Subject or pattern.
    pub subject: String,
    /// Queue group, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A service's full list of subscriptions; exchanged between peers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
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
    /// The service is closing: a normal stop, not an outage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
}

impl Snapshot {
    /// This service's snapshot from its local interests.
    pub fn of(
        service: &str,
        incarnation: u64,
        (generation, interests): (u64, Vec<Interest>),
        peers: Vec<String>,
        leaving: bool,
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
            leaving,
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
    /// Said it was closing: failing to reach it is expected, not news.
    left: bool,
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

/// How far a snapshot is believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trust {
    /// From an authenticated sender, or the answer of a peer this service
    /// chose to call: the sender and the peers it lists are learned.
    Full,
    /// From a sender that proved only its address: the sender is learned,
    /// the peers it lists are not (a stranger cannot point the mesh elsewhere).
    OwnAddressOnly,
}

impl EventPlan {
    /// Keeps plain subscribers only if `plain`, and only the queue groups in `groups`.
    pub fn restrict(&mut self, plain: bool, groups: &[(String, String)]) {
        self.group_holders.retain(|key, _| groups.contains(key));
        for delivery in self.deliveries.values_mut() {
            delivery.plain &= plain;
            delivery.groups.retain(|key| groups.contains(key));
        }
        self.deliveries
            .retain(|_, delivery| delivery.plain || !delivery.groups.is_empty());
    }
}

/// Why a snapshot was not taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refused {
    /// The sender's address is not a valid `http(s)://HOST:PORT`.
    InvalidService(String),
    /// This service already knows as many learned peers as it may.
    TooManyPeers,
}

/// The peers and their subscriptions.
pub(super) struct Directory {
    self_url: String,
    peers: RwLock<BTreeMap<String, Peer>>,
    rotation: AtomicUsize,
    max_learned: usize,
}

impl Directory {
    /// A directory that starts with the configured peers and learns at most
    /// `max_learned` more.
    pub fn new(self_url: String, configured: &[String], max_learned: usize) -> Self {
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
            max_learned,
        }
    }

    /// Whether `url` is one of the configured peers.
    pub fn is_configured(&self, url: &str) -> bool {
        self.read().get(url).is_some_and(|peer| peer.configured)
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

    /// Takes in a peer's snapshot (learning the peer if it is new); older news
    /// is ignored. Addresses that are not `http(s)://HOST:PORT` are never
    /// learned, and learned peers stay within the bound.
    pub fn merge(&self, mut snapshot: Snapshot, trust: Trust) -> Result<(), Refused> {
        snapshot.service = super::settings::parse_peer(&snapshot.service)
            .map_err(|_| Refused::InvalidService(snapshot.service.escape_debug().to_string()))?;
        if snapshot.service == self.self_url {
            return Ok(());
        }
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        if snapshot.leaving {
            Self::leave(&mut peers, snapshot);
            return Ok(());
        }
        let mut learned = peers.values().filter(|peer| !peer.configured).count();
        if !peers.contains_key(&snapshot.service) {
            if learned >= self.max_learned {
                return Err(Refused::TooManyPeers);
            }
            learned += 1;
        }
        if trust == Trust::Full {
            for url in &snapshot.peers {
                let Ok(url) = super::settings::parse_peer(url) else {
                    continue;
                };
                if url != self.self_url && !peers.contains_key(&url) && learned < self.max_learned {
                    peers.insert(url, Peer::default());
                    learned += 1;
                }
            }
        }
        let peer = peers.entry(snapshot.service).or_default();
        peer.reachable = true;
        peer.failures = 0;
        peer.left = false;
        let version = (snapshot.incarnation, snapshot.generation);
        if peer.version.is_none_or(|known| known < version) {
            peer.version = Some(version);
            peer.subscriptions = snapshot.subscriptions;
        }
        Ok(())
    }

    /// A peer said it is closing: a learned one is forgotten, a configured one
    /// keeps no subscriptions and is retried quietly until it is back. A
    /// leaving peer this service never knew is not learned.
    fn leave(peers: &mut BTreeMap<String, Peer>, snapshot: Snapshot) {
        let Some(peer) = peers.get_mut(&snapshot.service) else {
            return;
        };
        // Only the incarnation this service knows may leave: a restarted peer's
        // old news, or a stranger without that number, changes nothing. A
        // peer known only from another's list (never heard from) may leave.
        let version = (snapshot.incarnation, snapshot.generation);
        if peer
            .version
            .is_some_and(|(incarnation, _)| incarnation != snapshot.incarnation)
        {
            return;
        }
        if !peer.configured {
            peers.remove(&snapshot.service);
            return;
        }
        peer.version = Some(version);
        peer.subscriptions.clear();
        peer.reachable = false;
        peer.left = true;
    }

    /// Records that a peer did not answer; it is tried again at the next sync,
    /// and a learned (not configured) peer that keeps failing is forgotten.
    /// True for the first failure in a row of a configured peer, or one this
    /// service has heard from, that did not say it was leaving, so the caller
    /// can say so once.
    pub fn mark_unreachable(&self, url: &str) -> bool {
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        let Some(peer) = peers.get_mut(url) else {
            return false;
        };
        peer.reachable = false;
        peer.failures += 1;
        // A peer known only from another's list may be long gone: not news.
        let heard_from = peer.configured || peer.version.is_some();
        let first = peer.failures == 1 && !peer.left && heard_from;
        if !peer.configured && peer.failures >= FORGET_AFTER_FAILURES {
            peers.remove(url);
        }
        first
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

    /// The queue groups of `plan`: those subscribed somewhere, here or at a peer.
    pub fn groups_of(plan: &EventPlan) -> Vec<(String, String)> {
        plan.group_holders.keys().cloned().collect()
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
            leaving: false,
        }
    }

    #[test]
    fn a_leaving_peer_is_quiet_and_strangers_cannot_make_one_leave() {
        let dir = Directory::new("http://me".into(), &["http://a".into()], 10);
        dir.merge(snapshot("http://a", 7, 1, &[("x", None)]), Trust::Full)
            .unwrap();
        dir.merge(snapshot("http://b", 3, 1, &[("x", None)]), Trust::Full)
            .unwrap();
        let mut forged = snapshot("http://a", 8, 9, &[]);
        forged.leaving = true;
        dir.merge(forged, Trust::OwnAddressOnly).unwrap();
        assert_eq!(
            dir.responders("x").len(),
            2,
            "another incarnation's leave is ignored"
        );

        let mut leaving = snapshot("http://a", 7, 2, &[]);
        leaving.leaving = true;
        dir.merge(leaving, Trust::Full).unwrap();
        assert_eq!(dir.responders("x"), ["http://b"]);
        assert!(
            !dir.mark_unreachable("http://a"),
            "a peer that left is not news"
        );
        let mut leaving = snapshot("http://b", 3, 2, &[]);
        leaving.leaving = true;
        dir.merge(leaving, Trust::Full).unwrap();
        assert_eq!(
            dir.peers(),
            ["http://a"],
            "a learned peer that left is forgotten"
        );

        // A peer known only from another's list (never heard from) may leave too.
        let mut gossip = snapshot("http://a", 7, 3, &[]);
        gossip.peers = vec!["http://c".into()];
        dir.merge(gossip, Trust::Full).unwrap();
        assert_eq!(dir.peers(), ["http://a", "http://c"]);
        let mut leaving = snapshot("http://c", 5, 9, &[]);
        leaving.leaving = true;
        dir.merge(leaving, Trust::OwnAddressOnly).unwrap();
        assert_eq!(
            dir.peers(),
            ["http://a"],
            "a peer only heard of that left is forgotten"
        );

        dir.merge(snapshot("http://a", 8, 0, &[("x", None)]), Trust::Full)
            .unwrap();
        assert_eq!(dir.responders("x"), ["http://a"], "back after a restart");
        assert!(
            dir.mark_unreachable("http://a"),
            "an outage after that is news again"
        );
    }

    #[test]
    fn peers_of_peers_are_learned_and_dead_learned_peers_forgotten() {
        let dir = Directory::new("http://me".into(), &["http://seed".into()], 10);
        let mut from_seed = snapshot("http://seed", 1, 1, &[]);
        from_seed.peers = vec!["http://other".into(), "http://me".into()];
        dir.merge(from_seed, Trust::Full).unwrap();
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
    fn strangers_cannot_point_the_mesh_elsewhere() {
        let dir = Directory::new("http://me".into(), &[], 2);
        let mut forged = snapshot("not a url at all", 1, 1, &[]);
        assert!(matches!(
            dir.merge(forged.clone(), Trust::OwnAddressOnly),
            Err(Refused::InvalidService(_))
        ));
        forged.service = "http://127.0.0.1:9".into();
        forged.peers = vec!["http://10.9.9.9:80".into(), "gopher://x".into()];
        dir.merge(forged, Trust::OwnAddressOnly).unwrap();
        assert_eq!(
            dir.peers(),
            ["http://127.0.0.1:9"],
            "listed peers not learned"
        );
        let mut gossip = snapshot("http://127.0.0.1:8", 1, 1, &[]);
        gossip.peers = vec![
            "http://a:1".into(),
            "http://b:1/path".into(),
            "http://c:1".into(),
        ];
        dir.merge(gossip, Trust::Full).unwrap();
        assert_eq!(
            dir.peers(),
            ["http://127.0.0.1:8", "http://127.0.0.1:9"],
            "bounded at 2 learned peers, invalid ones skipped"
        );
        assert_eq!(
            dir.merge(snapshot("http://d:1", 1, 1, &[]), Trust::Full),
            Err(Refused::TooManyPeers)
        );
    }

    #[test]
    fn newer_snapshots_win_and_restarts_count_as_newer() {
        let dir = Directory::new("http://me".into(), &["http://a".into()], 10);
        assert_eq!(dir.unsynced(), ["http://a"]);
        dir.merge(snapshot("http://a", 1, 5, &[("x", None)]), Trust::Full)
            .unwrap();
        dir.merge(snapshot("http://a", 1, 4, &[]), Trust::Full)
            .unwrap();
        assert_eq!(dir.responders("x"), ["http://a"]);
        dir.merge(snapshot("http://a", 2, 0, &[]), Trust::Full)
            .unwrap();
        assert!(dir.responders("x").is_empty());
        dir.merge(snapshot("http://me", 9, 9, &[("x", None)]), Trust::Full)
            .unwrap();
        assert_eq!(dir.peers(), ["http://a"]);
        assert!(dir.unsynced().is_empty());
    }

    #[test]
    fn each_group_gets_one_holder_across_services() {
        let dir = Directory::new("http://me".into(), &[], 10);
        dir.merge(
            snapshot(
                "http://a",
                1,
                1,
                &[("orders.*", Some("billing")), ("orders.*", None)],
            ),
            Trust::Full,
        )
        .unwrap();
        dir.merge(
            snapshot("http://b", 1, 1, &[("orders.*", Some("billing"))]),
            Trust::Full,
        )
        .unwrap();
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
