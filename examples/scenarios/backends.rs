//! The backends a scenario runs on, and how each service of a scenario connects.

use switchboard::settings::{RouteSettings, TransportSettings};
use switchboard::{Bus, Settings, Style};

/// One backend the runner measures.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Name in tables and charts (`memory`, `http`, `grpc`, `nats`, `nats-js`, `kafka`).
    pub name: &'static str,
    /// URL every service uses; for HTTP and gRPC, `peers=` is added per scenario.
    url: String,
    /// The first token of every subject this backend's scenarios use.
    pub prefix: String,
    /// The styles it runs chains in (durable NATS serves no requests on stream subjects).
    pub styles: &'static [Style],
}

impl Backend {
    /// Every backend compiled into this build, in the order they are run.
    pub fn compiled(prefix: &str) -> Vec<Backend> {
        let mut all = vec![Backend {
            name: "memory",
            url: format!("memory://{prefix}"),
            prefix: prefix.to_owned(),
            styles: &[Style::Sync, Style::Async],
        }];
        if cfg!(feature = "http") {
            all.push(Backend {
                name: "http",
                url: "http://127.0.0.1:0".into(),
                prefix: prefix.to_owned(),
                styles: &[Style::Sync, Style::Async],
            });
        }
        if cfg!(feature = "grpc") {
            all.push(Backend {
                name: "grpc",
                url: "grpc://127.0.0.1:0".into(),
                prefix: prefix.to_owned(),
                styles: &[Style::Sync, Style::Async],
            });
        }
        if cfg!(feature = "nats") {
            all.push(Backend {
                name: "nats",
                url: "nats://127.0.0.1:4222".into(),
                prefix: prefix.to_owned(),
                styles: &[Style::Sync, Style::Async],
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
            });
        }
        if cfg!(feature = "kafka") {
            // Low-latency settings (see adapters/kafka/docs.md): short fetch wait, no linger.
            all.push(Backend {
                name: "kafka",
                url: "kafka://127.0.0.1:9092?fetch_wait=1ms".into(),
                prefix: prefix.to_owned(),
                styles: &[Style::Sync, Style::Async],
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
        }
    }

    /// Connects the runner's own router; for HTTP and gRPC it is the seed the services learn peers from.
    pub async fn seed(&self, style: Style) -> switchboard::Result<Bus> {
        self.settings(&self.url, style, Vec::new()).connect().await
    }

    /// Connects a service's bus: same backend, the given style, optional routes.
    pub async fn service(
        &self,
        seed: &Bus,
        name: &str,
        style: Style,
        routes: Vec<RouteSettings>,
    ) -> switchboard::Result<Bus> {
        let url = match seed.local_address() {
            Some(address) => {
                let scheme = self.url.split("://").next().unwrap_or("http");
                format!("{}?peers={scheme}://{address}", self.url)
            }
            None => self.url.clone(),
        };
        tracing::debug!(service = name, %url, "connecting");
        self.settings(&url, style, routes).connect().await
    }

    fn settings(&self, url: &str, style: Style, routes: Vec<RouteSettings>) -> Settings {
        Settings {
            style,
            transports: [("default".to_owned(), TransportSettings::new(url))].into(),
            routes,
            ..Settings::default()
        }
    }
}
