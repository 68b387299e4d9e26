//! Settings: transports, routes and their defaults, from a TOML file and the
//! environment, through one loader ([`Settings::load`]).

mod describe;
pub(crate) mod events;
mod graphql;
pub(crate) mod outbox;
mod style;
mod table;
mod transport;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::codec::Encoding;
use crate::error::{Error, Result};
use crate::layers::Resilience;
use events::EventPolicy;

pub use graphql::{GraphqlExposure, GraphqlSettings};
pub use outbox::OutboxSettings;
pub use style::Style;
pub use table::{NoSubscriber, RouteDecision, RouteRule, RouteTable, DEFAULT_TRANSPORT};
pub use transport::{TransportSettings, DEFAULT_REQUEST_TIMEOUT, DEFAULT_URL};

/// The environment variable holding the default transport's URL
/// (`SWITCHBOARD_URL_<SERVICE>` overrides it for one service).
pub const URL_ENV: &str = "SWITCHBOARD_URL";

/// The environment variable naming a TOML settings file.
pub const CONFIG_ENV: &str = "SWITCHBOARD_CONFIG";

/// The environment variable overriding the default style (`sync` or `async`).
pub const STYLE_ENV: &str = "SWITCHBOARD_STYLE";

/// Transports, routes and their defaults, deserialised with serde.
///
/// ```toml
/// style = "sync"                  # for subjects no route gives a style
///
/// [transports.default]            # used for subjects no route sends elsewhere
/// url = "nats://127.0.0.1:4222"
/// request_timeout = "2s"
///
/// [transports.events]
/// url = "kafka://127.0.0.1:9092"
///
/// [[routes]]                      # first match wins
/// subjects = "inventory.*"
/// style = "async"
///
/// [[routes]]
/// subjects = "events.>"
/// style = "async"
/// transport = "events"
///
/// [[routes]]
/// subjects = "payments.charge"
/// timeout = "800ms"
///
/// [events]                        # see EventPolicy
/// max_attempts = 5
/// dead_letter = "dead-letter.{service}"
///
/// [resilience.retry]              # see layers::Resilience
/// attempts = 3
/// ```
///
/// [`Settings::load`] reads the file named by `SWITCHBOARD_CONFIG` (if set),
/// applies the service's `[services.NAME]` table (see [`ServiceSettings`]),
/// then `SWITCHBOARD_URL_<SERVICE>` or else `SWITCHBOARD_URL` to the
/// `default` transport and `SWITCHBOARD_STYLE` to the default style. With
/// nothing set, everything runs in-process (`memory://`), sync.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// use switchboard::{Settings, Style};
///
/// let settings = Settings::from_toml(r#"
///     style = "async"
///     [transports.default]
///     url = "memory://settings-doc"
/// "#)?;
/// assert_eq!(settings.style, Style::Async);
/// let bus = settings.connect().await?;
/// assert_eq!(bus.route("orders.place").style, Style::Async);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The style of subjects no route gives one (default `sync`).
    #[serde(default)]
    pub style: Style,
    /// Named transports; `default` (the in-process backend unless set) serves
    /// every subject that no route sends elsewhere.
    #[serde(default)]
    pub transports: BTreeMap<String, TransportSettings>,
    /// Route rules, matched in order; the first whose pattern covers a subject wins.
    #[serde(default)]
    pub routes: Vec<RouteSettings>,
    /// Retries and dead-lettering of failed events, for services on this router.
    #[serde(default)]
    pub events: EventPolicy,
    /// Layers put around every transport (timeouts, retry, circuit breaker, bulkheads).
    #[serde(default)]
    pub resilience: Resilience,
    /// The GraphQL gateway's token and limits (feature `graphql`; which
    /// subjects it exposes is each route's `graphql`).
    #[serde(default)]
    pub graphql: GraphqlSettings,
    /// Where async sends are held until a recipient took them (feature
    /// `outbox`; off without a `path`).
    #[serde(default)]
    pub outbox: OutboxSettings,
    /// Settings of one service each (`[services.orders]`), applied by
    /// [`Settings::load`] for the service it loads; the environment still
    /// overrides them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceSettings>,
    /// What CloudEvents attributes say about this process (`[cloudevents]`);
    /// which events carry them is `cloudevents` on routes and transports.
    #[serde(default)]
    pub cloudevents: CloudEventsSettings,
}

/// The `[cloudevents]` table.
///
/// ```toml
/// [cloudevents]
/// source = "https://shop.example.com/orders"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudEventsSettings {
    /// `ce-source` of the events published here; by default `/SERVICE` for
    /// settings loaded for a service ([`Settings::load`]), else `/switchboard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One `[services.NAME]` table: what differs for the service called `NAME`
/// when several share one settings file.
///
/// ```toml
/// [services.orders]
/// url = "http://127.0.0.1:7001?peers=http://127.0.0.1:7002"
/// outbox = { path = "data/orders-outbox.db" }
///
/// [services.billing]
/// url = "http://127.0.0.1:7002?peers=http://127.0.0.1:7001"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// The `default` transport's URL for this service (an HTTP or gRPC
    /// service needs a port of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// This service's outbox, instead of the top-level `[outbox]` (one
    /// process per outbox file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<OutboxSettings>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// A subject or pattern (`orders.*`, `events.>`).
    pub subjects: String,
    /// `sync` or `async`; the top-level `style` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<Style>,
    /// The name of a transport under `[transports]`; `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Request timeout for these subjects (`800ms`, `2s`); the transport's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Whether the GraphQL gateway exposes these subjects, and how (feature
    /// `graphql`); not exposed when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphql: Option<GraphqlExposure>,
    /// What an event that reaches no subscriber does: `count` (default) or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_no_subscriber: Option<NoSubscriber>,
    /// How long services remember the message ids of events they handled on
    /// these subjects, skipping a second delivery (`10m`); needs `[outbox]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<String>,
    /// `true`: these subjects are queries, always request/reply, whatever
    /// the top-level `style` or `SWITCHBOARD_STYLE` says (`style = "async"`
    /// with it is an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<bool>,
    /// `"async"`: a sync send that cannot reach a responder publishes the
    /// command as an event instead ([`Sent::Deferred`](crate::Sent::Deferred));
    /// needs `[outbox]` where the transport does not keep events itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Style>,
    /// How `send` encodes payloads on these subjects: `json` (default),
    /// `msgpack` or `cbor` (features of the same names), carried in
    /// `content-type`; receivers decode what they get whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<Encoding>,
    /// `true`: events on these subjects carry CloudEvents attributes as
    /// `ce-*` headers (see [`crate::cloudevents`]); `false` turns off what
    /// the transport's `cloudevents` turned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudevents: Option<bool>,
}

impl Settings {
    /// Parses TOML; errors give the line and the offending key.
    pub fn from_toml(text: &str) -> Result<Self> {
        let settings: Settings = toml::from_str(text)
            .map_err(|err| Error::config(format!("settings: {}", err.to_string().trim_end())))?;
        settings.route_table()?;
        Ok(settings)
    }

    /// Reads a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|err| {
            Error::config(format!(
                "cannot read settings file {}: {err}",
                path.display()
            ))
        })?;
        Self::from_toml(&text)
            .map_err(|err| Error::config(format!("{}: {}", path.display(), config_message(err))))
    }

    /// The settings of `service` from the environment: the one loader every
    /// example, the quickstart and the CLI use (see the type's docs).
    ///
    /// A variable that is set but wrong is an error, never a silent fallback to
    /// `memory://`: `SWITCHBOARD_CONFIG` naming a missing or malformed file
    /// fails with the path, line and key.
    pub fn load(service: &str) -> Result<Self> {
        Self::load_with(service, |name| std::env::var(name).ok())
    }

    /// [`load`](Self::load) with the environment supplied by `env`, for tests and embedding.
    pub fn load_with(service: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut settings = match env(CONFIG_ENV) {
            Some(path) if path.trim().is_empty() => {
                return Err(Error::config(format!(
                    "{CONFIG_ENV} is set but empty: name a TOML settings file or unset it"
                )))
            }
            Some(path) => Self::from_file(path.trim())
                .map_err(|err| Error::config(format!("{CONFIG_ENV}: {}", config_message(err))))?,
            None => Settings::default(),
        };
        if settings.cloudevents.source.is_none() {
            settings.cloudevents.source = Some(format!("/{service}"));
        }
        if let Some(own) = settings.services.get(service).cloned() {
            if let Some(url) = own.url {
                settings
                    .transports
                    .entry(DEFAULT_TRANSPORT.to_owned())
                    .or_default()
                    .url = url;
            }
            if let Some(outbox) = own.outbox {
                settings.outbox = outbox;
            }
        }
        let service_var = format!(
            "{URL_ENV}_{}",
            service.to_ascii_uppercase().replace('-', "_")
        );
        let url = [service_var.as_str(), URL_ENV]
            .into_iter()
            .find_map(|name| env(name).filter(|url| !url.trim().is_empty()));
        if let Some(url) = url {
            settings
                .transports
                .entry(DEFAULT_TRANSPORT.to_owned())
                .or_default()
                .url = url.trim().to_owned();
        }
        if let Some(style) = env(STYLE_ENV).filter(|s| !s.trim().is_empty()) {
            settings.style = style
                .parse()
                .map_err(|err| Error::config(format!("{STYLE_ENV}: {}", config_message(err))))?;
        }
        settings.route_table()?;
        Ok(settings)
    }

    /// The route table these settings describe; errors name the route and key.
    pub fn route_table(&self) -> Result<RouteTable> {
        self.resilience.validate()?;
        let mut table = RouteTable::new(self.style);
        for (index, route) in self.routes.iter().enumerate() {
            let key = |field: &str| format!("routes[{index}].{field}");
            let timeout = route
                .timeout
                .as_deref()
                .map(|t| crate::options::parse_duration(&key("timeout"), t))
                .transpose()?;
            let dedup = route
                .dedup
                .as_deref()
                .map(|window| crate::options::parse_duration(&key("dedup"), window))
                .transpose()?;
            if let Some(codec) = route.codec.filter(|codec| !codec.is_compiled_in()) {
                return Err(Error::config(format!(
                    "key `{}`: `{codec}` needs the `{}` feature of switchboard, which this build does not enable",
                    key("codec"),
                    codec.feature().unwrap_or("json")
                )));
            }

            if let Some(name) = &route.transport {
                if name != DEFAULT_TRANSPORT && !self.transports.contains_key(name) {
                    return Err(Error::config(format!(
                        "key `{}`: no transport named `{name}` under [transports]",
                        key("transport")
                    )));
                }
            }
            table
                .push(RouteRule {
                    pattern: route.subjects.clone(),
                    style: route.style,
                    transport: route.transport.clone(),
                    timeout,
                    on_no_subscriber: route.on_no_subscriber.unwrap_or_default(),
                    dedup,
                    query: route.query.unwrap_or(false),
                    fallback: route.fallback,
                    codec: route.codec.unwrap_or_default(),
                    cloudevents: route.cloudevents,
                })
                .map_err(|err| {
                    Error::config(format!(
                        "key `{}`: {}",
                        key("subjects"),
                        config_message(err)
                    ))
                })?;
        }
        Ok(table)
    }
}

/// The message of an [`Error::InvalidConfig`], or the error's text.
pub(crate) fn config_message(err: Error) -> String {
    match err {
        Error::InvalidConfig { message } => message,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP: &str = r#"
        style = "async"

        [transports.default]
        url = "memory://settings-test"

        [transports.fast]
        url = "memory://settings-test-fast"
        request_timeout = "1s"

        [[routes]]
        subjects = "payments.*"
        style = "sync"
        transport = "fast"
        timeout = "800ms"
    "#;

    #[test]
    fn a_service_takes_its_own_table_and_the_environment_still_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        std::fs::write(
            &path,
            r#"
            [transports.default]
            url = "memory://shared"

            [services.orders]
            url = "http://127.0.0.1:7001"
            outbox = { path = "data/orders.db" }

            [services.billing]
            url = "http://127.0.0.1:7002"
            "#,
        )
        .unwrap();
        let file = path.to_str().unwrap().to_owned();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            let file = file.clone();
            move |name: &str| match name {
                CONFIG_ENV => Some(file.clone()),
                _ => pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string()),
            }
        };
        let url = |settings: &Settings| settings.transports[DEFAULT_TRANSPORT].url.clone();
        let orders = Settings::load_with("orders", env(&[])).unwrap();
        assert_eq!(url(&orders), "http://127.0.0.1:7001");
        assert_eq!(
            orders.outbox.path.as_deref(),
            Some(std::path::Path::new("data/orders.db"))
        );
        let billing = Settings::load_with("billing", env(&[])).unwrap();
        assert_eq!(url(&billing), "http://127.0.0.1:7002");
        assert_eq!(billing.outbox.path, None);
        let other = Settings::load_with("shipping", env(&[])).unwrap();
        assert_eq!(url(&other), "memory://shared");
        let overridden = Settings::load_with(
            "orders",
            env(&[("SWITCHBOARD_URL_ORDERS", "http://127.0.0.1:7009")]),
        )
        .unwrap();
        assert_eq!(url(&overridden), "http://127.0.0.1:7009");
        let unknown = Settings::from_toml("[services.orders]\nport = 1").unwrap_err();
        assert!(unknown.to_string().contains("port"), "{unknown}");
    }

    #[test]
    fn a_route_names_its_codec_and_a_wrong_one_is_refused_with_the_choices() {
        let table = Settings::from_toml(
            "[[routes]]\nsubjects = \"prices.*\"\ncodec = \"msgpack\"\n[[routes]]\nsubjects = \"audit.*\"\ncodec = \"cbor\"",
        )
        .unwrap()
        .route_table()
        .unwrap();
        assert_eq!(table.decide("prices.tea").codec, Encoding::MsgPack);
        assert_eq!(table.decide("audit.login").codec, Encoding::Cbor);
        assert_eq!(table.decide("orders.place").codec, Encoding::Json);
        let err = Settings::from_toml("[[routes]]\nsubjects = \"a\"\ncodec = \"yaml\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("codec") && err.contains("msgpack"), "{err}");
    }

    #[tokio::test]
    async fn a_fallback_route_needs_somewhere_to_wait_and_a_sync_style() {
        let fallback = |extra: &str| {
            Settings::from_toml(&format!(
                "[transports.default]\nurl = \"memory://fallback-doc\"\n[[routes]]\nsubjects = \"orders.*\"\nfallback = \"async\"\n{extra}"
            ))
        };
        let table = fallback("").unwrap().route_table().unwrap();
        assert!(table.decide("orders.place").fallback_async);
        assert!(!table.decide("stock.count").fallback_async);
        for (extra, says) in [
            ("query = true", "cannot fall back to async"),
            ("style = \"async\"", "already async"),
        ] {
            let err = fallback(extra).unwrap_err().to_string();
            assert!(
                err.contains(says) && err.matches("invalid configuration").count() == 1,
                "{err}"
            );
        }
        let err = Settings::from_toml("[[routes]]\nsubjects = \"a\"\nfallback = \"sync\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("can only be \"async\""), "{err}");
        // Memory without an outbox would lose a deferred command: refused at connect.
        let err = fallback("")
            .unwrap()
            .connect()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("routes[0]") && err.contains("add an [outbox]"),
            "{err}"
        );
    }

    #[test]
    fn a_query_route_stays_sync_when_the_default_flips() {
        let settings = Settings::from_toml(
            "style = \"async\"\n[[routes]]\nsubjects = \"reports.*\"\nquery = true",
        )
        .unwrap();
        let table = settings.route_table().unwrap();
        assert_eq!(table.decide("reports.count").style, Style::Sync);
        assert_eq!(table.decide("orders.place").style, Style::Async);
        let err = Settings::from_toml(
            "[[routes]]\nsubjects = \"reports.*\"\nquery = true\nstyle = \"async\"",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("routes[0].subjects") && err.contains("is a query"),
            "{err}"
        );
    }

    #[test]
    fn parses_routes_and_defaults() {
        let settings = Settings::from_toml(SHOP).unwrap();
        let table = settings.route_table().unwrap();
        let charge = table.decide("payments.charge");
        assert_eq!(charge.style, Style::Sync);
        assert_eq!(charge.transport, "fast");
        assert_eq!(charge.timeout, Some(std::time::Duration::from_millis(800)));
        assert_eq!(table.decide("inventory.reserve").style, Style::Async);
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = Settings::from_toml("stlye = \"sync\"")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("stlye"), "{unknown}");
        let style = Settings::from_toml("[[routes]]\nsubjects = \"a\"\nstyle = \"sometimes\"")
            .unwrap_err()
            .to_string();
        assert!(
            style.contains("style") && style.contains("sometimes"),
            "{style}"
        );
        let transport = Settings::from_toml("[[routes]]\nsubjects = \"a\"\ntransport = \"nope\"")
            .unwrap_err()
            .to_string();
        assert!(transport.contains("routes[0].transport"), "{transport}");
        let timeout = Settings::from_toml("[[routes]]\nsubjects = \"a\"\ntimeout = \"soon\"")
            .unwrap_err()
            .to_string();
        assert!(timeout.contains("routes[0].timeout"), "{timeout}");
        let pattern = Settings::from_toml("[[routes]]\nsubjects = \"a..b\"")
            .unwrap_err()
            .to_string();
        assert!(pattern.contains("routes[0].subjects"), "{pattern}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        std::fs::write(&path, SHOP).unwrap();
        let env = |name: &str| match name {
            CONFIG_ENV => Some(path.display().to_string()),
            "SWITCHBOARD_URL_ORDERS" => Some("memory://orders-only".into()),
            URL_ENV => Some("memory://everyone".into()),
            STYLE_ENV => Some("sync".into()),
            _ => None,
        };
        let orders = Settings::load_with("orders", env).unwrap();
        assert_eq!(orders.transports["default"].url, "memory://orders-only");
        assert_eq!(orders.style, Style::Sync);
        let payments = Settings::load_with("payments", env).unwrap();
        assert_eq!(payments.transports["default"].url, "memory://everyone");
        let bad = Settings::load_with("x", |name| (name == STYLE_ENV).then(|| "later".into()));
        assert!(bad.unwrap_err().to_string().contains(STYLE_ENV));
    }

    #[test]
    fn a_set_config_variable_never_falls_back_to_memory() {
        let missing = Settings::load_with("x", |name| {
            (name == CONFIG_ENV).then(|| "/nonexistent/switchboard.toml".into())
        })
        .unwrap_err()
        .to_string();
        assert!(
            missing.contains(CONFIG_ENV) && missing.contains("/nonexistent/switchboard.toml"),
            "{missing}"
        );
        let empty = Settings::load_with("x", |name| (name == CONFIG_ENV).then(String::new));
        assert!(empty.unwrap_err().to_string().contains("set but empty"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "style = \"sync\"\n[transports.default]\nurl = 42\n").unwrap();
        let malformed = Settings::load_with("x", |name| {
            (name == CONFIG_ENV).then(|| path.display().to_string())
        })
        .unwrap_err();
        let text = format!("{malformed:?}");
        assert!(text.contains("line 3") && text.contains("url"), "{text}");
        assert!(text.contains('^'), "keeps the caret layout: {text}");
    }
}
