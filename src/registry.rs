//! Backend selection by URL scheme: the built-in backends, filled at compile
//! time from the enabled features, and those registered by other crates.

use std::sync::RwLock;

use crate::error::{Error, Result};
use switchboard_core::transport::ConnectFn;

/// One row of the scheme table.
#[derive(Debug, Clone, Copy)]
pub struct BackendInfo {
    /// The backend's name, as in [`Capabilities::backend`](crate::transport::Capabilities).
    pub name: &'static str,
    /// The URL schemes it serves.
    pub schemes: &'static [&'static str],
    /// The Cargo feature that compiles it in.
    pub feature: &'static str,
    pub(crate) connect: Option<ConnectFn>,
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
const MEMORY_CONNECT: Option<ConnectFn> = Some(crate::memory::connect);
#[cfg(not(feature = "memory"))]
const MEMORY_CONNECT: Option<ConnectFn> = None;

#[cfg(feature = "http")]
const HTTP_CONNECT: Option<ConnectFn> = Some(crate::http::connect);
#[cfg(not(feature = "http"))]
const HTTP_CONNECT: Option<ConnectFn> = None;

#[cfg(feature = "grpc")]
const GRPC_CONNECT: Option<ConnectFn> = Some(crate::grpc::connect);
#[cfg(not(feature = "grpc"))]
const GRPC_CONNECT: Option<ConnectFn> = None;

#[cfg(feature = "nats")]
const NATS_CONNECT: Option<ConnectFn> = Some(crate::nats::connect);
#[cfg(not(feature = "nats"))]
const NATS_CONNECT: Option<ConnectFn> = None;

#[cfg(feature = "amqp")]
const AMQP_CONNECT: Option<ConnectFn> = Some(crate::amqp::connect);
#[cfg(not(feature = "amqp"))]
const AMQP_CONNECT: Option<ConnectFn> = None;

#[cfg(feature = "redis")]
const REDIS_CONNECT: Option<ConnectFn> = Some(crate::redis::connect);
#[cfg(not(feature = "redis"))]
const REDIS_CONNECT: Option<ConnectFn> = None;

#[cfg(feature = "kafka")]
const KAFKA_CONNECT: Option<ConnectFn> = Some(crate::kafka::connect);
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
    BackendInfo {
        name: "amqp",
        schemes: &["amqp", "amqps"],
        feature: "amqp",
        connect: AMQP_CONNECT,
    },
    BackendInfo {
        name: "redis",
        schemes: &["redis", "rediss"],
        feature: "redis",
        connect: REDIS_CONNECT,
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

pub(crate) fn find_in(table: &[BackendInfo], scheme: &str) -> Result<BackendInfo> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_table_knows_every_backend() {
        let names: Vec<_> = backends().iter().map(|b| b.name).collect();
        assert_eq!(
            names,
            ["memory", "http", "grpc", "nats", "kafka", "amqp", "redis"]
        );
        match find_in(BACKENDS, "bogus") {
            Err(Error::UnknownScheme { known, .. }) => {
                assert!(known.contains("nats://") && known.contains("kafka://"))
            }
            other => panic!("{other:?}"),
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
