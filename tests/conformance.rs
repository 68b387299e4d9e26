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
        #[cfg(feature = "nats")]
        Arc::new(UrlFixture::new("nats", "nats://127.0.0.1:4222")),
    ]
}

fn main() -> ExitCode {
    conformance::run(fixtures())
}
