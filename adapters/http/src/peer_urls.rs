//! Peers' URLs, parsed once: a call's URL is its peer's with the path set,
//! kept per subject, so reqwest is handed a parsed URL and no call parses
//! its host or path again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reqwest::Url;

/// Peers kept at most; past it the table starts over. Peers come from the
/// settings and from snapshot exchanges, so this bounds the table rather
/// than sizing it.
const MOST_PEERS: usize = 1024;
/// Paths kept over all peers, at most; past it every peer's paths start
/// over (their bases stay). A service that calls a subject per entity
/// (`orders.<id>`) keeps at most this many, a few hundred kilobytes.
const MOST_PATHS: usize = 4096;

type FoldMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The parsed URLs of each peer called so far.
#[derive(Clone, Default)]
pub(super) struct PeerUrls(Arc<Mutex<Table>>);

#[derive(Default)]
struct Table {
    peers: FoldMap<String, Peer>,
    /// Paths kept over all peers.
    paths: usize,
}

/// One peer's base URL, and the URLs of the paths called on it, by prefix
/// (`/requests/`, `/events/`, …) and then by what follows it.
struct Peer {
    base: Url,
    paths: Vec<(&'static str, FoldMap<String, Url>)>,
}

impl PeerUrls {
    /// `prefix` (an absolute path) followed by `rest`, at `peer`; `None` if
    /// `peer` is not a URL that can take a path (peers are checked when
    /// they are learned).
    pub(super) fn at(&self, peer: &str, prefix: &'static str, rest: &str) -> Option<Url> {
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let table = &mut *table;
        if !table.peers.contains_key(peer) {
            let base = Url::parse(peer)
                .ok()
                .filter(|url| !url.cannot_be_a_base())?;
            if table.peers.len() >= MOST_PEERS {
                table.peers.clear();
                table.paths = 0;
            }
            let paths = Vec::new();
            table.peers.insert(peer.to_owned(), Peer { base, paths });
        }
        if table.paths >= MOST_PATHS {
            for known in table.peers.values_mut() {
                known.paths.clear();
            }
            table.paths = 0;
        }
        let Peer { base, paths } = table.peers.get_mut(peer)?;
        let index = match paths.iter().position(|(known, _)| *known == prefix) {
            Some(index) => index,
            None => {
                paths.push((prefix, FoldMap::default()));
                paths.len() - 1
            }
        };
        let urls = &mut paths[index].1;
        if let Some(url) = urls.get(rest) {
            return Some(url.clone());
        }
        let mut url = base.clone();
        url.set_path(&format!("{prefix}{rest}"));
        urls.insert(rest.to_owned(), url.clone());
        table.paths += 1;
        Some(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_at_a_peer_is_the_url_the_string_would_parse_to() {
        let urls = PeerUrls::default();
        for peer in [
            "http://127.0.0.1:4000",
            "https://[::1]:4001",
            "http://localhost:80",
        ] {
            for (prefix, rest) in [
                ("/requests/", "orders.place"),
                ("/events/", "a-b_c.d"),
                ("/events/", "orders.place"),
                ("/_switchboard/subscriptions", ""),
            ] {
                // Twice: parsed the first time, from the table the second.
                for _ in 0..2 {
                    let expected = Url::parse(&format!("{peer}{prefix}{rest}")).unwrap();
                    assert_eq!(urls.at(peer, prefix, rest), Some(expected));
                }
            }
        }
    }

    #[test]
    fn a_string_that_is_no_peer_url_gives_none() {
        let urls = PeerUrls::default();
        assert_eq!(urls.at("not a url", "/requests/", "x"), None);
        assert_eq!(
            urls.at("mailto:someone@example.com", "/requests/", "x"),
            None
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let urls = PeerUrls::default();
        for port in 0..(MOST_PEERS as u32 + 10) {
            urls.at(&format!("http://127.0.0.1:{}", 1000 + port), "/x/", "")
                .unwrap();
        }
        assert!(urls.0.lock().unwrap().peers.len() <= MOST_PEERS);
        // Paths over all peers together, whatever peer and prefix.
        for subject in 0..(MOST_PATHS + 10) {
            let peer = format!("http://127.0.0.1:{}", 2000 + subject % 3);
            let prefix = ["/requests/", "/events/"][subject % 2];
            urls.at(&peer, prefix, &subject.to_string()).unwrap();
        }
        let table = urls.0.lock().unwrap();
        let kept: usize = table
            .peers
            .values()
            .flat_map(|peer| peer.paths.iter().map(|(_, urls)| urls.len()))
            .sum();
        assert_eq!(kept, table.paths);
        assert!(kept <= MOST_PATHS, "{kept} paths kept");
    }
}
