//! A backend URL taken apart for its adapter: scheme, hosts, options; and
//! the same URL with its password hidden, for messages.

use crate::error::{Error, Result};
use crate::options::Options;

/// A backend URL taken apart for an adapter.
///
/// Backends with clusters accept several hosts (`nats://a:4222,b:4222`), which
/// a standard URL cannot hold; `url` keeps the first host and `hosts` all of them.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The URL with only its first host (scheme, credentials, path and query intact).
    pub url: url::Url,
    /// Every `host[:port]` of the authority, in the order written; empty for `memory://`.
    pub hosts: Vec<String>,
    /// The query options the adapter has to read; unknown ones must be reported.
    pub options: Options,
}

impl Endpoint {
    /// Parses `SCHEME://[USER[:PASSWORD]@]HOST[:PORT][,HOST[:PORT]…][/PATH][?OPTIONS]`.
    pub fn parse(raw: &str) -> Result<Self> {
        let malformed =
            |why: String| Error::config(format!("malformed URL `{}`: {why}", redact(raw)));
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| malformed("expected SCHEME://…".into()))?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, host_list) = match authority.rfind('@') {
            Some(at) => authority.split_at(at + 1),
            None => ("", authority),
        };
        let hosts: Vec<String> = if host_list.is_empty() {
            Vec::new()
        } else {
            host_list.split(',').map(str::to_owned).collect()
        };
        if hosts.iter().any(String::is_empty) {
            return Err(malformed("empty host in the host list".into()));
        }
        for host in hosts.iter().skip(1) {
            url::Url::parse(&format!("{scheme}://{host}"))
                .map_err(|e| malformed(format!("host `{host}`: {e}")))?;
        }
        let first = hosts.first().map(String::as_str).unwrap_or("");
        let url = url::Url::parse(&format!("{scheme}://{userinfo}{first}{tail}"))
            .map_err(|e| malformed(e.to_string()))?;
        let options = Options::from_url(&url)?;
        Ok(Endpoint {
            url,
            hosts,
            options,
        })
    }
}

/// The URL with any password replaced by `***`, for error messages and logs.
pub fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        // Unparseable: keep only the scheme-ish prefix so secrets never leak.
        Err(_) => raw.split('@').next_back().unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("nats://user:secret@127.0.0.1:4222"),
            "nats://user:***@127.0.0.1:4222"
        );
        assert!(!redact("nats://user:secret@[bad").contains("secret"));
    }

    #[test]
    fn endpoints_keep_every_host() {
        let endpoint = Endpoint::parse("nats://u:p@a:4222,b:4223,[::1]:4224/x?name=svc").unwrap();
        assert_eq!(endpoint.hosts, ["a:4222", "b:4223", "[::1]:4224"]);
        assert_eq!(endpoint.url.as_str(), "nats://u:p@a:4222/x?name=svc");
        assert_eq!(
            Endpoint::parse("memory://").unwrap().hosts,
            Vec::<String>::new()
        );
        for bad in [
            "nats://a:1,,b:2",
            "nats://a:1,b:port",
            "memory",
            "",
            "nats://a:99999",
        ] {
            let err = Endpoint::parse(bad).unwrap_err();
            assert!(err.to_string().contains("malformed URL"), "{bad}: {err}");
        }
    }
}
