//! `http://` URL options, read strictly: every option is documented in `docs.md`.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_core::endpoint::Endpoint;
use switchboard_core::error::{Error, Result};

/// The options `http://` URLs accept (besides the core `request_timeout`).
pub const OPTIONS: &[&str] = &[
    "peers",
    "advertise",
    "token",
    "max_body",
    "server_timeout",
    "peer_timeout",
    "retries",
    "sync_interval",
    "buffer",
    "header_timeout",
    "max_connections",
    "max_peers",
    "join",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "tls_client_auth",
];

/// Default largest request or event body, in bytes.
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;
/// Default bound on receiving and handling one incoming HTTP request.
pub const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on one call to a peer (announcement or event delivery).
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of retries for an event delivery that failed transiently.
pub const DEFAULT_RETRIES: usize = 3;
/// Default interval at which unreachable peers are asked again for their subscriptions.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(2);
/// Default number of messages queued per local subscription.
pub const DEFAULT_BUFFER: usize = 1024;
/// Default bound on receiving a request's headers, and on an idle keep-alive connection.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of connections the server serves at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default number of peers a service learns (configured peers do not count).
pub const DEFAULT_MAX_PEERS: usize = 256;

/// Who may announce itself to a service without a token or client certificate (`join`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// `join=self` (default): a service may announce itself, and only itself:
    /// the address in its snapshot must be the one it connects from. The
    /// peers it lists are not learned from it.
    OwnAddress,
    /// `join=configured`: only the configured peers may announce themselves.
    Configured,
}

/// Settings of one HTTP service.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Where this service's server listens (`URL host:port`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Base URLs of the services to learn subscriptions from and announce to (`peers`).
    pub peers: Vec<String>,
    /// The base URL peers reach this service at (`advertise`); by default
    /// `http://LISTEN`, with 127.0.0.1 for an unspecified listen address.
    pub advertise: Option<String>,
    /// Shared bearer token required on every request (`token`).
    pub token: Option<String>,
    /// Largest accepted body, in bytes (`max_body`); larger ones get 413.
    pub max_body: usize,
    /// Bound on receiving and handling one incoming request (`server_timeout`).
    pub server_timeout: Duration,
    /// Bound on one call to a peer (`peer_timeout`).
    pub peer_timeout: Duration,
    /// Retries of a transiently failed event delivery (`retries`).
    pub retries: usize,
    /// How often unreachable peers are tried again (`sync_interval`).
    pub sync_interval: Duration,
    /// Messages queued per local subscription before senders wait (`buffer`).
    pub buffer: usize,
    /// Bound on receiving a request's headers and on an idle connection (`header_timeout`).
    pub header_timeout: Duration,
    /// Connections served at once (`max_connections`).
    pub max_connections: usize,
    /// Peers learned at most, besides the configured ones (`max_peers`).
    pub max_peers: usize,
    /// Who may announce itself without a token or client certificate (`join`).
    pub join: Join,
    /// `https://`: this service's certificate and how peers are verified.
    pub tls: Option<super::tls::HttpTls>,
}

impl HttpSettings {
    /// Reads an `http://HOST:PORT?…` endpoint.
    pub fn from_endpoint(endpoint: Endpoint) -> Result<Self> {
        Self::read(endpoint, Flavor::Http)
    }

    /// Reads a `grpc://HOST:PORT?…` endpoint: the same options, peers as
    /// `grpc://HOST:PORT`, kept in gRPC's own `http://HOST:PORT` form.
    pub fn from_grpc_endpoint(endpoint: Endpoint) -> Result<Self> {
        Self::read(endpoint, Flavor::Grpc)
    }

    fn read(endpoint: Endpoint, flavor: Flavor) -> Result<Self> {
        let scheme = flavor.scheme();
        let Endpoint {
            url,
            hosts,
            mut options,
        } = endpoint;
        if hosts.len() != 1 {
            return Err(Error::config(format!(
                "{scheme} URL names the one address this service listens on: {scheme}://HOST:PORT (list other services in `peers`)",
            )));
        }
        if !matches!(url.path(), "" | "/") || !url.username().is_empty() {
            return Err(Error::config(format!(
                "{scheme} URL takes no path or credentials: {scheme}://HOST:PORT?options (use `token` for auth)",
            )));
        }
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().ok_or_else(|| {
            Error::config(format!(
                "{scheme} URL needs a port to listen on (0 picks a free one)"
            ))
        })?;
        let ip: std::net::IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| {
                Error::config(format!(
                    "{scheme} URL host must be an IP address to listen on, got `{host}` (e.g. 0.0.0.0 or 127.0.0.1)"
                ))
            })?;
        let peers = match options.take("peers") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|peer| flavor.parse_peer(peer))
                .collect::<Result<_>>()?,
        };
        let advertise = options
            .take("advertise")
            .map(|a| flavor.parse_peer(&a))
            .transpose()?;
        let buffer = options
            .take_parsed::<usize>("buffer")?
            .unwrap_or(DEFAULT_BUFFER);
        if buffer == 0 {
            return Err(Error::config("option `buffer` must be at least 1"));
        }
        let tls = read_tls(flavor, url.scheme(), &mut options)?;
        let settings = HttpSettings {
            listen: SocketAddr::new(ip, port),
            peers,
            advertise,
            token: options.take("token").filter(|t| !t.is_empty()),
            max_body: options.take_parsed("max_body")?.unwrap_or(DEFAULT_MAX_BODY),
            server_timeout: options
                .take_duration("server_timeout")?
                .unwrap_or(DEFAULT_SERVER_TIMEOUT),
            peer_timeout: options
                .take_duration("peer_timeout")?
                .unwrap_or(DEFAULT_PEER_TIMEOUT),
            retries: options.take_parsed("retries")?.unwrap_or(DEFAULT_RETRIES),
            sync_interval: options
                .take_duration("sync_interval")?
                .unwrap_or(DEFAULT_SYNC_INTERVAL),
            buffer,
            header_timeout: options
                .take_duration("header_timeout")?
                .unwrap_or(DEFAULT_HEADER_TIMEOUT),
            max_connections: match options.take_parsed::<usize>("max_connections")? {
                Some(0) => {
                    return Err(Error::config("option `max_connections` must be at least 1"))
                }
                n => n.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            },
            max_peers: options
                .take_parsed("max_peers")?
                .unwrap_or(DEFAULT_MAX_PEERS),
            join: match options.take("join").as_deref() {
                None | Some("self") => Join::OwnAddress,
                Some("configured") => Join::Configured,
                Some(other) => {
                    return Err(Error::config(format!(
                        "option `join`: `{other}` is not `self` or `configured`"
                    )))
                }
            },
            tls,
        };
        options.finish(&format!("{scheme}://"), OPTIONS)?;
        Ok(settings)
    }
}

/// Which backend's URL is read: the options are the same, the peers' scheme is not.
#[derive(Clone, Copy)]
enum Flavor {
    Http,

    Grpc,
}

impl Flavor {
    fn scheme(self) -> &'static str {
        match self {
            Flavor::Http => "http",
            Flavor::Grpc => "grpc",
        }
    }

    /// The scheme of a service with TLS.
    fn secure_scheme(self) -> &'static str {
        match self {
            Flavor::Http => "https",
            Flavor::Grpc => "grpcs",
        }
    }

    /// A peer as the mesh keeps it: `http(s)://HOST:PORT` (gRPC peers are
    /// written `grpc(s)://HOST:PORT` and kept in tonic's `http(s)://` form).
    fn parse_peer(self, raw: &str) -> Result<String> {
        match self {
            Flavor::Http => parse_peer(raw),
            Flavor::Grpc => match (raw.strip_prefix("grpc://"), raw.strip_prefix("grpcs://")) {
                (Some(address), _) => parse_peer(&format!("http://{address}")),
                (_, Some(address)) => parse_peer(&format!("https://{address}")),
                _ => Err(Error::config(format!(
                    "option `peers`: `{raw}` must be grpc://HOST:PORT or grpcs://HOST:PORT"
                ))),
            },
        }
    }
}

/// `https://` (`grpcs://`) needs a certificate and key; `tls_*` options need it.
fn read_tls(
    flavor: Flavor,
    scheme: &str,
    options: &mut switchboard_core::options::Options,
) -> Result<Option<super::tls::HttpTls>> {
    let secure = flavor.secure_scheme();
    let https = scheme == secure;
    let cert = options.take("tls_cert");
    let key = options.take("tls_key");
    let ca = options.take("tls_ca");
    let client_auth = options
        .take_parsed::<bool>("tls_client_auth")?
        .unwrap_or(false);
    if !https {
        if cert.is_some() || key.is_some() || ca.is_some() || client_auth {
            return Err(Error::config(format!(
                "options `tls_*` need a {secure}:// URL ({secure}://HOST:PORT?tls_cert=…&tls_key=…)",
            )));
        }
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        return Err(Error::config(format!(
            "a {secure}:// service needs `tls_cert` and `tls_key`: the PEM files of its certificate and key",
        )));
    };
    if client_auth && ca.is_none() {
        return Err(Error::config(
            "option `tls_client_auth` needs `tls_ca`: the CA that signs the peers' certificates",
        ));
    }
    Ok(Some(super::tls::HttpTls {
        cert: cert.into(),
        key: key.into(),
        ca: ca.map(Into::into),
        client_auth,
    }))
}

/// A peer's base URL: `http(s)://HOST:PORT`, without a trailing slash; no
/// credentials, path, query or fragment.
pub fn parse_peer(raw: &str) -> Result<String> {
    let url = url::Url::parse(raw)
        .map_err(|e| Error::config(format!("option `peers`: `{raw}` is not a URL: {e}")))?;
    let plain = matches!(url.path(), "" | "/")
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !plain {
        return Err(Error::config(format!(
            "option `peers`: `{raw}` must be http://HOST:PORT or https://HOST:PORT"
        )));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> Result<HttpSettings> {
        HttpSettings::from_endpoint(Endpoint::parse(url)?)
    }

    #[test]
    fn reads_every_option() {
        let s = settings(
            "http://0.0.0.0:8080?peers=http://10.0.0.2:8080,http://orders:8081/&advertise=http://10.0.0.1:8080\
             &token=s3cret&max_body=1024&server_timeout=10s&peer_timeout=1s&retries=5&sync_interval=500ms&buffer=64",
        )
        .unwrap();
        assert_eq!(s.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.peers, ["http://10.0.0.2:8080", "http://orders:8081"]);
        assert_eq!(s.advertise.as_deref(), Some("http://10.0.0.1:8080"));
        assert_eq!(s.token.as_deref(), Some("s3cret"));
        assert_eq!((s.max_body, s.retries, s.buffer), (1024, 5, 64));
        assert_eq!(s.server_timeout, Duration::from_secs(10));
        assert_eq!(s.sync_interval, Duration::from_millis(500));
        assert_eq!(settings("http://[::1]:0").unwrap().listen.port(), 0);
        let defaults = settings("http://127.0.0.1:0").unwrap();
        assert_eq!(defaults.join, Join::OwnAddress);
        assert_eq!(defaults.header_timeout, DEFAULT_HEADER_TIMEOUT);
        assert!(defaults.tls.is_none());
        let secure = settings(
            "https://127.0.0.1:0?tls_cert=/c.pem&tls_key=/k.pem&tls_ca=/ca.pem&tls_client_auth=true\
             &join=configured&max_connections=10&max_peers=3&header_timeout=2s",
        )
        .unwrap();
        assert!(secure.tls.unwrap().client_auth);
        assert_eq!((secure.max_connections, secure.max_peers), (10, 3));
        assert_eq!(secure.join, Join::Configured);
    }

    #[test]
    fn rejects_bad_urls() {
        for (url, expected) in [
            ("http://localhost:80", "IP address"),
            ("http://127.0.0.1:1,127.0.0.1:2", "one address"),
            ("http://127.0.0.1:1/x", "no path"),
            ("http://127.0.0.1:1?peers=ftp://x:1", "must be http"),
            ("http://127.0.0.1:1?peers=http://x:1/steal", "must be http"),
            ("http://127.0.0.1:1?peers=http://u:p@x:1", "must be http"),
            ("http://127.0.0.1:1?tls_cert=c.pem", "https://"),
            ("https://127.0.0.1:1", "tls_cert"),
            (
                "https://127.0.0.1:1?tls_cert=c&tls_key=k&tls_client_auth=true",
                "tls_ca",
            ),
            ("http://127.0.0.1:1?join=anyone", "join"),
            ("http://127.0.0.1:1?max_connections=0", "at least 1"),
            ("http://127.0.0.1:1?header_timeout=0s", "greater than zero"),
            ("http://127.0.0.1:1?peers=nonsense", "not a URL"),
            ("http://127.0.0.1:1?buffer=0", "at least 1"),
            ("http://127.0.0.1:1?colour=blue", "unknown option `colour`"),
        ] {
            let err = settings(url).unwrap_err();
            assert!(err.to_string().contains(expected), "{url}: {err}");
        }
    }
}
