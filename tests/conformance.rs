//! Runs the conformance suite against every backend compiled into this build,
//! or only against `SWITCHBOARD_TEST_URL` when it is set.

use std::process::ExitCode;
use std::sync::Arc;

use switchboard::conformance::{self, Fixture, UrlFixture};

fn fixtures() -> Vec<Arc<dyn Fixture>> {
    if let Some(fixture) = conformance::fixture_from_env() {
        return vec![fixture];
    }
    // One fixture per backend compiled in; servers are expected on loopback.
    vec![
        #[cfg(feature = "memory")]
        Arc::new(UrlFixture::new("memory", "memory://conformance")),
        #[cfg(feature = "http")]
        Arc::new(mesh::Mesh::new("http")),
        #[cfg(feature = "grpc")]
        Arc::new(mesh::Mesh::new("grpc")),
        #[cfg(feature = "nats")]
        Arc::new(UrlFixture::new("nats", "nats://127.0.0.1:4222")),
        // JetStream durable mode for the event subjects of the style-matrix
        // cases; requests stay on core subjects, which JetStream cannot serve.
        #[cfg(feature = "nats")]
        Arc::new(UrlFixture::new(
            "nats-js",
            "nats://127.0.0.1:4222?jetstream=SB_CONFORMANCE\
             &jetstream_subjects=conformance.matrix-async.>,conformance.matrix-shutdown.>",
        )),
        #[cfg(feature = "kafka")]
        Arc::new(UrlFixture::new("kafka", "kafka://127.0.0.1:9092")),
        #[cfg(feature = "amqp")]
        Arc::new(UrlFixture::new("amqp", "amqp://127.0.0.1:5672")),
        #[cfg(feature = "redis")]
        Arc::new(UrlFixture::new("redis", "redis://127.0.0.1:6379")),
    ]
}

fn main() -> ExitCode {
    let plain = fixtures();
    // The same suite again with every resilience layer around each backend:
    // the layers must not change any behaviour the suite checks.
    let layered: Vec<Arc<dyn Fixture>> = plain
        .iter()
        .map(|inner| Arc::new(Layered::new(inner.clone())) as Arc<dyn Fixture>)
        .collect();
    conformance::run(plain.into_iter().chain(layered).collect())
}

/// Wraps every connection of another fixture in all resilience layers.
struct Layered {
    inner: Arc<dyn Fixture>,
    name: String,
}

impl Layered {
    fn new(inner: Arc<dyn Fixture>) -> Self {
        let name = format!("{}+layers", inner.name());
        Layered { inner, name }
    }
}

#[async_trait::async_trait]
impl Fixture for Layered {
    fn name(&self) -> &str {
        &self.name
    }

    async fn connect(&self) -> switchboard::Result<switchboard::Bus> {
        let bus = self.inner.connect().await?;
        let layered = switchboard::layers::Resilience::all().wrap(bus.transport().clone())?;
        Ok(switchboard::Bus::new(layered).with_default_timeout(bus.default_timeout()))
    }
}

/// HTTP or gRPC services on ephemeral loopback ports, each told about the
/// live ones before it, so they form a mesh by learning from each other.
#[cfg(feature = "http")]
mod mesh {
    use std::sync::{Mutex, Weak};

    use async_trait::async_trait;
    use switchboard::conformance::Fixture;
    use switchboard::{transport::Transport, Bus};

    pub struct Mesh {
        scheme: &'static str,
        services: Mutex<Vec<(String, Weak<dyn Transport>)>>,
    }

    impl Mesh {
        pub fn new(scheme: &'static str) -> Self {
            Mesh {
                scheme,
                services: Mutex::default(),
            }
        }
    }

    #[async_trait]
    impl Fixture for Mesh {
        fn name(&self) -> &str {
            self.scheme
        }

        async fn connect(&self) -> switchboard::Result<Bus> {
            let peers: Vec<String> = {
                let mut services = self.services.lock().unwrap();
                services.retain(|(_, service)| service.strong_count() > 0);
                services.iter().map(|(url, _)| url.clone()).collect()
            };
            let bus = switchboard::connect(&format!(
                "{}://127.0.0.1:0?peers={}&sync_interval=200ms",
                self.scheme,
                peers.join(",")
            ))
            .await?;
            let address = bus.local_address().expect("a mesh service serves");
            let url = format!("{}://{address}", self.scheme);
            self.services
                .lock()
                .unwrap()
                .push((url, std::sync::Arc::downgrade(bus.transport())));
            Ok(bus)
        }
    }
}
