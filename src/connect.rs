//! Backend selection by URL scheme: a table filled at compile time from the enabled features.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::options::Options;
use crate::transport::Transport;

/// The future an adapter's connect function returns.
pub type ConnectFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn Transport>>> + Send>>;

/// An adapter's entry point: the parsed URL, its host list and its options
/// (already stripped of the core options such as `request_timeout`).
pub type ConnectFn = fn(Endpoint) -> ConnectFuture;

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

/// One row of the scheme table.
#[derive(Debug, Clone, Copy)]
pub struct BackendInfo {
    /// The backend's name, as in [`Capabilities::backend`](crate::transport::Capabilities).
    pub name: &'static str,
    /// The URL schemes it serves.
    pub schemes: &'static [&'static str],
    /// The Cargo feature that compiles it in.
    pub feature: &'static str,
    connect: Option<ConnectFn>,
}

impl BackendInfo {
    /// A backend written outside this crate, to [`register`].
    ///
    /// `name` is what [`Capabilities::backend`](crate::transport::Capabilities)
    /// reports, `schemes` the URL schemes it serves, `connect` its entry point.
    pub const fn new(
        name: &'static str,
        schemes: &'static [&'static str],
        connect: ConnectFn,
    ) -> Self {
        BackendInfo {
            name,
            schemes,
            feature: "",
            connect: Some(connect),
        }
    }

    /// Whether this build includes the backend.
    pub fn is_enabled(&self) -> bool {
        self.connect.is_some()
    }
}

#[cfg(feature = "memory")]
const MEMORY_CONNECT: Option<ConnectFn> = Some(crate::memory::connect_boxed);
#[cfg(not(feature = "memory"))]
const MEMORY_CONNECT: Option<ConnectFn> = None;

#[cfg(feature = "http")]
const HTTP_CONNECT: Option<ConnectFn> = Some(crate::http::connect_boxed);
#[cfg(not(feature = "http"))]
const HTTP_CONNECT: Option<ConnectFn> = None;

#[cfg(feature = "grpc")]
const GRPC_CONNECT: Option<ConnectFn> = Some(crate::grpc::connect_boxed);
#[cfg(not(feature = "grpc"))]
const GRPC_CONNECT: Option<ConnectFn> = None;

#[cfg(feature = "nats")]
const NATS_CONNECT: Option<ConnectFn> = Some(crate::nats::connect_boxed);
#[cfg(not(feature = "nats"))]
const NATS_CONNECT: Option<ConnectFn> = None;

#[cfg(feature = "kafka")]
const KAFKA_CONNECT: Option<ConnectFn> = Some(crate::kafka::connect_boxed);
#[cfg(not(feature = "kafka"))]
const KAFKA_CONNECT: Option<ConnectFn> = None;

const BACKENDS: &[BackendInfo] = &[
    BackendInfo {
        name: "memory",
        schemes: &["memory"],
        feature: "memory",
        connect: MEMORY_CONNECT,
    },
    BackendInfo {
        name: "http",
        schemes: &["http", "https"],
        feature: "http",
        connect: HTTP_CONNECT,
    },
    BackendInfo {
        name: "grpc",
        schemes: &["grpc", "grpcs"],
        feature: "grpc",
        connect: GRPC_CONNECT,
    },
    BackendInfo {
        name: "nats",
        schemes: &["nats"],
        feature: "nats",
        connect: NATS_CONNECT,
    },
    BackendInfo {
        name: "kafka",
        schemes: &["kafka"],
        feature: "kafka",
        connect: KAFKA_CONNECT,
    },
];

/// Backends registered at run time by crates outside switchboard.
static REGISTERED: RwLock<Vec<BackendInfo>> = RwLock::new(Vec::new());

/// Makes a backend written in another crate selectable by URL: after this,
/// [`connect`](crate::connect) and [`Settings`](crate::Settings) find it by scheme.
///
/// Fails with [`Error::InvalidConfig`] if one of its schemes is already
/// served (built-in schemes cannot be replaced). Registering the same
/// backend twice is a no-op.
///
/// ```
/// use std::sync::Arc;
/// use switchboard::transport::{self, BackendInfo, Endpoint, ConnectFuture};
///
/// // A scheme `mem2` that reuses the in-memory backend, to show the plumbing.
/// fn connect_mem2(endpoint: Endpoint) -> ConnectFuture {
///     Box::pin(async move {
///         let name = endpoint.url.host_str().unwrap_or("mem2").to_owned();
///         let bus = switchboard::connect(&format!("memory://{name}")).await?;
///         Ok(bus.transport().clone())
///     })
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// transport::register(BackendInfo::new("mem2", &["mem2"], connect_mem2))?;
/// let bus = switchboard::connect("mem2://doc").await?;
/// assert_eq!(bus.backend(), "memory");
/// # Ok(()) }
/// ```
pub fn register(backend: BackendInfo) -> Result<()> {
    let mut registered = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    for scheme in backend.schemes {
        if let Some(built_in) = BACKENDS.iter().find(|b| b.schemes.contains(scheme)) {
            return Err(Error::config(format!(
                "scheme `{scheme}` is served by the built-in `{}` backend",
                built_in.name
            )));
        }
        if let Some(other) = registered.iter().find(|b| b.schemes.contains(scheme)) {
            if other.name == backend.name {
                return Ok(());
            }
            return Err(Error::config(format!(
                "scheme `{scheme}` is already registered by the `{}` backend",
                other.name
            )));
        }
    }
    registered.push(backend);
    Ok(())
}

/// Every backend switchboard knows, built in (whether or not this build
/// enables it) or [registered](register).
pub fn backends() -> Vec<BackendInfo> {
    let registered = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    BACKENDS.iter().chain(registered.iter()).copied().collect()
}

/// The names of the backends this build can connect to.
pub fn enabled_backends() -> Vec<&'static str> {
    backends()
        .iter()
        .filter(|b| b.is_enabled())
        .map(|b| b.name)
        .collect()
}

/// Connects to the backend named by `url`'s scheme.
///
/// | URL | backend | feature |
/// |---|---|---|
/// | `memory://` or `memory://NAME` | in-process | `memory` (default) |
/// | `http://HOST:PORT?…` | HTTP | `http` |
/// | `grpc://HOST:PORT?…`, `grpcs://…` | gRPC | `grpc` |
/// | `nats://HOST:PORT[,HOST:PORT]?…` | NATS | `nats` |
/// | `kafka://HOST:PORT[,HOST:PORT]?…` | Kafka | `kafka` |
///
/// Every URL also accepts `request_timeout=DURATION` (e.g. `500ms`, `5s`): the
/// default timeout of [`Bus::request`]. Other options are the adapter's own; an
/// unknown option is an error.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bus = switchboard::connect("memory://").await.unwrap();
/// assert_eq!(bus.backend(), "memory");
///
/// let err = switchboard::connect("bogus://x").await.unwrap_err();
/// assert!(err.to_string().contains("unknown URL scheme `bogus`"));
/// # }
/// ```
pub async fn connect(url: &str) -> Result<Bus> {
    let mut endpoint = Endpoint::parse(url)?;
    let request_timeout = endpoint.options.take_duration("request_timeout")?;
    let backend = find_in(&backends(), endpoint.url.scheme())?;
    let connect = backend.connect.expect("find returns enabled backends only");
    let transport = connect(endpoint).await?;
    let bus = Bus::new(transport);
    Ok(match request_timeout {
        Some(timeout) => bus.with_default_timeout(timeout),
        None => bus,
    })
}

fn find_in(table: &[BackendInfo], scheme: &str) -> Result<BackendInfo> {
    let backend = table
        .iter()
        .find(|b| b.schemes.contains(&scheme))
        .ok_or_else(|| Error::UnknownScheme {
            scheme: scheme.to_owned(),
            known: table
                .iter()
                .flat_map(|b| {
                    b.schemes.iter().map(move |scheme| match b.is_enabled() {
                        true => format!("{scheme}:// (enabled)"),
                        false => format!("{scheme}:// (needs feature `{}`)", b.feature),
                    })
                })
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    if !backend.is_enabled() {
        return Err(Error::FeatureDisabled {
            scheme: scheme.to_owned(),
            feature: backend.feature,
            enabled: table
                .iter()
                .filter(|b| b.is_enabled())
                .map(|b| b.name)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(*backend)
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
    fn scheme_table_knows_every_backend() {
        let names: Vec<_> = backends().iter().map(|b| b.name).collect();
        assert_eq!(names, ["memory", "http", "grpc", "nats", "kafka"]);
        match find_in(BACKENDS, "bogus") {
            Err(Error::UnknownScheme { known, .. }) => {
                assert!(known.contains("nats://") && known.contains("kafka://"))
            }
            other => panic!("{other:?}"),
        }
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

    #[test]
    fn disabled_backend_names_its_feature() {
        let table = [
            BackendInfo {
                name: "memory",
                schemes: &["memory"],
                feature: "memory",
                connect: Some(|_| Box::pin(async { Err(Error::Closed) })),
            },
            BackendInfo {
                name: "nats",
                schemes: &["nats"],
                feature: "nats",
                connect: None,
            },
        ];
        let err = find_in(&table, "nats").unwrap_err();
        assert_eq!(
            err.to_string(),
            "scheme `nats` needs the `nats` feature of switchboard, which this build does not enable (enabled: memory)"
        );
        assert!(find_in(&table, "memory").is_ok());
    }
}
