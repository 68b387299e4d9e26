//! Peers' base URLs, parsed once: a call's URL is its peer's with the path
//! set, so reqwest does not parse a whole URL string (most of the work is
//! the host) on every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reqwest::Url;

/// Peers kept at most; past it the table starts over. Peers come from the
/// settings and from snapshot exchanges, so this bounds the table rather
/// than sizing it.
const MOST_PEERS: usize = 1024;

/// The parsed base URL of each peer called so far.
#[derive(Clone, Default)]
pub(super) struct PeerUrls(Arc<Mutex<HashMap<String, Url>>>);

impl PeerUrls {
    /// `path` (absolute) at `peer`; `None` if `peer` is not a URL that can
    /// take a path (peers are checked when they are learned).
    pub(super) fn at(&self, peer: &str, path: &str) -> Option<Url> {
        let mut url = {
            let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match known.get(peer) {
                Some(url) => url.clone(),
                None => {
                    let url = Url::parse(peer)
                        .ok()
                        .filter(|url| !url.cannot_be_a_base())?;
                    if known.len() >= MOST_PEERS {
                        known.clear();
                    }
                    known.insert(peer.to_owned(), url.clone());
                    url
                }
            }
        };
        url.set_path(path);
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
            for path in [
                "/requests/orders.place",
                "/events/a-b_c.d",
                "/_switchboard/subscriptions",
            ] {
                // Twice: parsed the first time, from the table the second.
                for _ in 0..2 {
                    let expected = Url::parse(&format!("{peer}{path}")).unwrap();
                    assert_eq!(urls.at(peer, path), Some(expected));
                }
            }
        }
    }

    #[test]
    fn a_string_that_is_no_peer_url_gives_none() {
        let urls = PeerUrls::default();
        assert_eq!(urls.at("not a url", "/requests/x"), None);
        assert_eq!(urls.at("mailto:someone@example.com", "/requests/x"), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let urls = PeerUrls::default();
        for port in 0..(MOST_PEERS as u32 + 10) {
            urls.at(&format!("http://127.0.0.1:{}", 1000 + port), "/x")
                .unwrap();
        }
        assert!(urls.0.lock().unwrap().len() <= MOST_PEERS);
    }
}
