//! The backends a scenario runs on, and how each service of a scenario connects.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use switchboard::settings::{OutboxSettings, RouteSettings, TransportSettings};
use switchboard::{Bus, Settings, Style};

/// One backend the runner measures.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Name in tables and charts (`memory`, `http`, `grpc`, `nats`, `nats-js`, `kafka`, `amqp`, `redis`).
    pub name: &'static str,
    /// URL every service uses; for HTTP and gRPC, `peers=` is added per scenario.
    url: String,
    /// The first token of every subject this backend's scenarios use.
    pub prefix: String,
    /// The styles it runs chains in (durable NATS serves no requests on stream subjects).
    pub styles: &'static [Style],
    /// Where each service's `[outbox]` file goes, for the `+outbox` rows.
    outbox: Option<PathBuf>,
    /// Every route is sync with `fallback = "async"` (the `sync+fallback` rows).
    fallback: bool,
}

impl Backend {
    /// Every backend compiled into this build, in the order they are run.
    pub fn compiled(prefix: &str) -> Vec<Backend> {
        let mut all = vec![Backend {
            name: "memory",
            url: format!("memory://{prefix}"),
            prefix: prefix.to_owned(),
            styles: &[Style::Sync, Style::Async],
            outbox: None,
            fallback: false,
        }];
        if cfg!(feature = "http") {
            all.push(Backend {
                name: "http",
                url: "http://127.0.0.1:0".into(),
                prefix: prefix.to_owned(),
                styles: &[Style::Sync, Style::Async],
                outbox: None,
                fallback: false,
            });
        }
        if cfg!(feature = "grpc") {
            all.push(Backend {
                name: "grpc",
                url: "grpc://127.0.0.1:0".into(),
                prefix: prefix.to_owned(),
                styles: &[Style::Sync, Style::Async],
                outbox: None,
                fallback: false,
            });
        }
        if cfg!(feature = "nats") {
            all.push(Backend {
                name: "nats",
                url: "nats://127.0.0.1:4222".into(),
                prefix: prefix.to_owned(),
                styles: &[Style::Sync, Style::Async],
                outbox: None,
                fallback: false,
            });
            // Durable mode: a JetStream stream captures this backend's subjects. They
            // get their own prefix: a core request to a subject a stream captures is
            // answered by the stream's publish acknowledgement.
            let durable = format!("{prefix}js");
            all.push(Backend {
                name: "nats-js",
                // `PREFIX.*.*` captures the chain's and fan-out's events
                // (`PREFIX.pN.sK`), not the fan-out's requests (`PREFIX.pN.ask.cK`).
                url: format!(
                    "nats://127.0.0.1:4222?jetstream={}&jetstream_subjects={durable}.*.*",
                    durable.to_uppercase()
                ),
                prefix: durable,
                styles: &[Style::Async],
                outbox: None,
                fallback: false,
            });
        }
        if cfg!(feature = "kafka") {
            // Low-latency settings (see adapters/kafka/docs.md): short fetch wait, no linger.
            all.push(Backend {
                name: "kafka",
                url: "kafka://127.0.0.1:9092?fetch_wait=1ms".into(),
                prefix: prefix.to_owned(),
                styles: &[Style::Sync, Style::Async],
                outbox: None,
                fallback: false,
            });
        }
        if cfg!(feature = "amqp") {
            all.push(Backend {
                name: "amqp",
                url: "amqp://127.0.0.1:5672".into(),
                prefix: prefix.to_owned(),
                styles: &[Style::Sync, Style::Async],
                outbox: None,
                fallback: false,
            });
        }
        if cfg!(feature = "redis") {
            all.push(Backend {
                name: "redis",
                url: "redis://127.0.0.1:6379".into(),
                prefix: prefix.to_owned(),
                styles: &[Style::Sync, Style::Async],
                outbox: None,
                fallback: false,
            });
        }
        all
    }

    /// A backend at `url` (a cluster, say), under its own name and subject prefix.
    pub fn custom(
        name: &'static str,
        url: String,
        prefix: String,
        styles: &'static [Style],
    ) -> Self {
        Backend {
            name,
            url,
            prefix,
            styles,
            outbox: None,
            fallback: false,
        }
    }

    /// This backend with every service's async sends held in an outbox file
    /// under `dir` (async only), for a backend that keeps nothing for an
    /// absent consumer; `None` for the others (JetStream and Kafka keep
    /// events themselves).
    pub fn with_outbox(&self, dir: &Path) -> Option<Backend> {
        let name = match self.name {
            "memory" => "memory+outbox",
            "http" => "http+outbox",
            "grpc" => "grpc+outbox",
            "nats" => "nats+outbox",
            _ => return None,
        };
        Some(Backend {
            name,
            url: self.url.clone(),
            prefix: format!("{}o", self.prefix),
            styles: &[Style::Async],
            outbox: Some(dir.to_owned()),
            fallback: false,
        })
    }

    /// This backend with an outbox file per service under `dir` and every
    /// route sync with `fallback = "async"`: a send whose responder is away
    /// is deferred through the outbox. `None` where a deferred command has
    /// nowhere to wait or is never deferred: core NATS drops an event nobody
    /// listens to without telling the outbox, JetStream subjects serve no
    /// requests, and a Kafka request nobody serves times out (a `Timeout` is
    /// never deferred: the handler may have run).
    pub fn with_fallback(&self, dir: &Path) -> Option<Backend> {
        let outbox = self.with_outbox(dir)?;
        (self.name != "nats").then(|| Backend {
            prefix: format!("{}f", self.prefix),
            styles: &[Style::Sync],
            fallback: true,
            ..outbox
        })
    }

    /// The style a row names: `sync+fallback` where sync routes fall back to async.
    pub fn style_label(&self, style: Style) -> String {
        match self.fallback {
            true => format!("{style}+fallback"),
            false => style.to_string(),
        }
    }

    /// Whether every service's async sends go through an outbox (the `+outbox` rows).
    pub fn has_outbox(&self) -> bool {
        self.outbox.is_some()
    }

    /// What an accepted async send means here: held in an `outbox` file,
    /// stored by the `broker` (JetStream, Kafka, RabbitMQ's group queues, Redis streams), or `at-most-once`.
    pub fn delivery_mode(&self) -> &'static str {
        match (self.outbox.is_some(), self.name) {
            (true, _) => "outbox",
            (false, "nats-js" | "kafka" | "amqp" | "redis") => "broker",
            (false, _) => "at-most-once",
        }
    }

    /// The URL a service (or a process of its own) connects with: for HTTP
    /// and gRPC, with the seed as its peer.
    pub fn service_url(&self, seed: &Bus) -> String {
        match seed.local_address() {
            Some(address) => {
                let scheme = self.url.split("://").next().unwrap_or("http");
                format!("{}?peers={scheme}://{address}", self.url)
            }
            None => self.url.clone(),
        }
    }

    /// Connects the runner's own router; for HTTP and gRPC it is the seed the services learn peers from.
    pub async fn seed(&self, style: Style) -> switchboard::Result<Bus> {
        self.settings(&self.url, "seed", style, Vec::new())
            .connect()
            .await
    }

    /// Connects a service's bus: same backend, the given style, optional routes.
    pub async fn service(
        &self,
        seed: &Bus,
        name: &str,
        style: Style,
        routes: Vec<RouteSettings>,
    ) -> switchboard::Result<Bus> {
        let url = self.service_url(seed);
        tracing::debug!(service = name, %url, "connecting");
        self.settings(&url, name, style, routes).connect().await
    }

    fn settings(
        &self,
        url: &str,
        name: &str,
        style: Style,
        mut routes: Vec<RouteSettings>,
    ) -> Settings {
        if self.fallback {
            for route in &mut routes {
                route.fallback = Some(Style::Async);
            }
            routes.push(RouteSettings {
                subjects: ">".into(),
                style: None,
                transport: None,
                timeout: None,
                graphql: None,
                on_no_subscriber: None,
                dedup: None,
                query: None,
                fallback: Some(Style::Async),
                codec: None,
                cloudevents: None,
            });
        }
        // A file per connection: a restarted service in a scenario gets a
        // new bus, and one process holds each file.
        static FILES: AtomicU64 = AtomicU64::new(0);
        let outbox = match &self.outbox {
            Some(dir) => OutboxSettings {
                path: Some(dir.join(format!(
                    "{name}-{}.db",
                    FILES.fetch_add(1, Ordering::Relaxed)
                ))),
                ..OutboxSettings::default()
            },
            None => OutboxSettings::default(),
        };
        Settings {
            style,
            transports: [("default".to_owned(), TransportSettings::new(url))].into(),
            routes,
            outbox,
            ..Settings::default()
        }
    }
}
