//! Message headers: a small, ordered, case-insensitive map of string names to string values.

use crate::error::{Error, Result};
use crate::wire::names as wire;

/// Headers carried with a [`Message`](crate::Message).
///
/// Names are case-insensitive and stored in lower case, so they survive every
/// backend unchanged (HTTP/2 lower-cases names on the wire). One value per name:
/// inserting a name again replaces its value.
///
/// Names are ASCII letters, digits, `-`, `_` and `.`; values are printable ASCII
/// (space to `~`) and tab. Names starting with `sb-` are reserved for the
/// transport (see [`wire`](crate::wire)). The rules are checked when a message
/// is sent, so a bad header fails the call with [`Error::InvalidHeader`]
/// instead of being mangled by a backend.
///
/// ```
/// let mut headers = switchboard::headers::Headers::new();
/// headers.insert("Tenant", "acme");
/// assert_eq!(headers.get("tenant"), Some("acme"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    /// An empty header map (no allocation).
    pub const fn new() -> Self {
        Headers {
            entries: Vec::new(),
        }
    }

    /// Sets `name` to `value`, replacing any earlier value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let mut name = name.into();
        name.make_ascii_lowercase();
        let value = value.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name, value)),
        }
    }

    /// Sets a header received from the wire, if it follows the portable rules;
    /// one that does not (a non-ASCII value, a name with spaces, …) is left
    /// out and `false` returned, so a peer in another language cannot hand a
    /// handler a header no switchboard sender could have set.
    pub fn insert_received(&mut self, name: &str, value: &str) -> bool {
        if validate_name(name).is_err() || validate_value(name, value).is_err() {
            tracing::debug!(
                header = %name.escape_debug(),
                "received header left out: not a portable name and printable-ASCII value"
            );
            return false;
        }
        self.insert(name, value);
        true
    }

    /// The value of `name`, if present (case-insensitive).
    #[inline]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Removes `name` and returns its value, if present.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let index = self
            .entries
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(self.entries.remove(index).1)
    }

    /// Whether `name` is present.
    #[inline]
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All headers as `(name, value)` pairs, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Keeps only the headers for which `keep(name, value)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.entries.retain(|(name, value)| keep(name, value));
    }

    /// The number of headers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks every header against the portable rules, and that none uses a
    /// reserved `sb-` name that callers may not set.
    pub fn validate_outgoing(&self) -> Result<()> {
        for (name, value) in self.iter() {
            validate_name(name)?;
            validate_value(name, value)?;
            if wire::is_reserved(name) && !wire::is_settable(name) {
                return Err(Error::InvalidHeader {
                    name: name.to_owned(),
                    reason: "names starting with `sb-` are reserved for the transport".into(),
                });
            }
        }
        Ok(())
    }
}

/// The longest header name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// The longest header value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 4096;

/// Checks a header name: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `-`, `_`, `.`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidHeader {
            name: name.to_owned(),
            reason: format!("a name is 1 to {MAX_NAME_LEN} ASCII letters, digits, `-`, `_` or `.`"),
        })
    }
}

/// Checks a header value: at most [`MAX_VALUE_LEN`] bytes of printable ASCII or tab.
pub fn validate_value(name: &str, value: &str) -> Result<()> {
    let ok = value.len() <= MAX_VALUE_LEN
        && value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidHeader {
            name: name.to_owned(),
            reason: format!("a value is at most {MAX_VALUE_LEN} bytes of printable ASCII"),
        })
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (name, value) in iter {
            headers.insert(name, value);
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_headers_outside_the_rules_are_left_out() {
        let mut headers = Headers::new();
        assert!(headers.insert_received("Tenant", "acme"));
        assert!(!headers.insert_received("tenant", "caf\u{e9}"));
        assert!(!headers.insert_received("bad name", "x"));
        assert!(!headers.insert_received("ctl", "a\u{1}b"));
        assert_eq!(headers.len(), 1);
        assert_eq!(headers.get("tenant"), Some("acme"));
    }

    #[test]
    fn case_insensitive_single_valued() {
        let mut h = Headers::new();
        h.insert("X-Trace", "1");
        h.insert("x-trace", "2");
        assert_eq!(h.len(), 1);
        assert_eq!(h.get("X-TRACE"), Some("2"));
        assert_eq!(h.remove("x-Trace").as_deref(), Some("2"));
        assert!(h.is_empty());
    }

    #[test]
    fn outgoing_rules() {
        let ok: Headers = [("tenant", "acme corp"), ("sb-key", "k1")]
            .into_iter()
            .collect();
        ok.validate_outgoing().unwrap();
        for (name, value) in [
            ("bad name", "v"),
            ("", "v"),
            ("x", "line\nbreak"),
            ("x", "é"),
            ("sb-status", "ok"),
        ] {
            let h: Headers = [(name, value)].into_iter().collect();
            let err = h.validate_outgoing().unwrap_err();
            assert_eq!(
                err.kind(),
                crate::ErrorKind::InvalidHeader,
                "{name:?}={value:?}"
            );
        }
    }
}
