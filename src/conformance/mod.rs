//! The conformance suite: behaviour every backend must show, run against any URL.
//!
//! Each [`Case`] states which [`Capabilities`] it needs; a backend that declares
//! a capability unsupported shows the case as ignored *with the reason*, never
//! as a silent pass. Cases reach the backend only through the public selection
//! path ([`connect`](crate::connect) via a [`Fixture`]), so they test what
//! services get.
//!
//! Run it from a test target with `harness = false`:
//!
//! ```no_run
//! use std::sync::Arc;
//! use switchboard::conformance::{run, UrlFixture};
//!
//! fn main() -> std::process::ExitCode {
//!     run(vec![Arc::new(UrlFixture::new("memory", "memory://conformance"))])
//! }
//! ```
//!
//! Trials are named `BACKEND::CASE`, so `cargo test --test conformance nats::`
//! runs one backend. With `CI=true`, a backend that cannot be reached fails
//! every trial; otherwise its trials are ignored with the connection error as
//! the reason.

#[cfg(any(feature = "msgpack", feature = "cbor"))]
mod codec;
#[cfg(feature = "outbox")]
mod dedup;
#[cfg(feature = "outbox")]
mod fallback;
mod fixture;
#[cfg(feature = "outbox")]
mod outbox;
mod pubsub;
mod request_reply;
mod shutdown;
mod style_matrix;
pub mod support;
mod typed;
mod validation;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::bus::Bus;
use crate::capabilities::{Capabilities, Support};
use crate::error::Result;
pub use fixture::Fixture;
pub use support::{CaseResult, Failure};

/// The environment variable that points the suite at one URL instead of the defaults.
pub const TEST_URL_ENV: &str = "SWITCHBOARD_TEST_URL";

/// How long one case may run before it counts as hung.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(90);

/// A fixture that connects to one URL.
#[derive(Debug, Clone)]
pub struct UrlFixture {
    name: String,
    url: String,
}

impl UrlFixture {
    /// A fixture called `name` that connects to `url`.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        UrlFixture {
            name: name.into(),
            url: url.into(),
        }
    }

    /// A fixture named after the URL's scheme.
    pub fn from_url(url: impl Into<String>) -> Self {
        let url = url.into();
        let name = url.split("://").next().unwrap_or("custom").to_owned();
        UrlFixture { name, url }
    }
}

#[async_trait]
impl Fixture for UrlFixture {
    fn name(&self) -> &str {
        &self.name
    }

    async fn connect(&self) -> Result<Bus> {
        crate::connect(&self.url).await
    }
}

type CaseFuture<'a> = Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

/// One behaviour every backend must show.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name (the second half of the trial name).
    pub name: &'static str,
    /// Whether a backend with these capabilities can run the case.
    pub needs: fn(&Capabilities) -> Support,
    run: for<'a> fn(&'a dyn Fixture) -> CaseFuture<'a>,
}

impl Case {
    /// Runs the case against `fixture`.
    pub async fn run(&self, fixture: &dyn Fixture) -> CaseResult {
        (self.run)(fixture).await
    }
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

fn always(_: &Capabilities) -> Support {
    Support::Yes
}

macro_rules! case {
    ($name:literal, $needs:expr, $run:path) => {
        Case {
            name: $name,
            needs: $needs,
            run: |fixture| Box::pin($run(fixture)),
        }
    };
}

/// Every case in the suite.
pub fn cases() -> Vec<Case> {
    vec![
        case!(
            "request_reply_round_trip",
            |c| c.request_reply,
            request_reply::round_trip
        ),
        case!(
            "concurrent_requests_matched",
            |c| c.request_reply,
            request_reply::concurrent_requests
        ),
        case!(
            "request_timeout",
            |c| c.request_reply,
            request_reply::timeout
        ),
        case!(
            "no_responders",
            |c| c.no_responders,
            request_reply::no_responders
        ),
        case!(
            "remote_handler_error",
            |c| c.request_reply,
            request_reply::remote_error
        ),
        case!(
            "request_headers_round_trip",
            |c| c.headers,
            request_reply::headers_round_trip
        ),
        case!(
            "echo_request_as_reply",
            |c| c.request_reply,
            request_reply::echo_request_as_reply
        ),
        case!(
            "close_drains_in_flight_requests",
            |c| c.request_reply,
            request_reply::close_drains
        ),
        case!("fan_out_to_every_subscriber", always, pubsub::fan_out),
        case!(
            "queue_group_delivers_once",
            |c| c.queue_groups,
            pubsub::queue_group_once
        ),
        case!(
            "event_headers_round_trip",
            |c| c.headers,
            pubsub::headers_round_trip
        ),
        case!("per_publisher_ordering", |c| c.ordering, pubsub::ordering),
        case!(
            "subscribe_then_publish_never_lost",
            always,
            pubsub::subscribe_then_publish
        ),
        case!("unsubscribe_on_drop", always, pubsub::unsubscribe_on_drop),
        case!("wildcard_subscriptions", |c| c.wildcards, pubsub::wildcards),
        case!(
            "close_ends_subscriptions",
            always,
            pubsub::close_ends_subscriptions
        ),
        case!(
            "closed_transport_refuses_calls",
            always,
            validation::closed_refuses
        ),
        case!(
            "invalid_subjects_rejected",
            always,
            validation::invalid_subjects
        ),
        case!(
            "invalid_headers_rejected",
            always,
            validation::invalid_headers
        ),
        case!(
            "payload_sizes_0_to_1mib",
            |c| c.request_reply,
            validation::payload_sizes
        ),
        case!(
            "payload_too_large_rejected",
            always,
            validation::payload_too_large
        ),
        case!("typed_round_trip", |c| c.request_reply, typed::round_trip),
        case!("typed_codec_error", |c| c.request_reply, typed::codec_error),
        #[cfg(feature = "msgpack")]
        case!(
            "codec_msgpack_typed_requests_and_events",
            |c| c.request_reply,
            codec::msgpack_round_trip
        ),
        #[cfg(feature = "cbor")]
        case!(
            "codec_cbor_typed_requests_and_events",
            |c| c.request_reply,
            codec::cbor_round_trip
        ),
        #[cfg(feature = "protobuf")]
        case!(
            "codec_protobuf_typed_requests_and_events",
            |c| c.request_reply,
            codec::protobuf_round_trip
        ),
        case!(
            "typed_handler_error",
            |c| c.request_reply,
            typed::handler_error
        ),
        case!(
            "refusal_names_its_origin_across_hops",
            |c| c.request_reply,
            typed::refusal_names_its_origin_across_hops
        ),
        case!(
            "typed_handler_panic_answered",
            |c| c.request_reply,
            typed::handler_panic
        ),
        case!("typed_events", always, typed::events),
        case!(
            "keyed_events_keep_order",
            |c| c.ordering,
            typed::keyed_events_keep_order
        ),
        case!(
            "request_concurrency_is_bounded",
            |c| c.request_reply,
            typed::request_concurrency_is_bounded
        ),
        case!(
            "handler_finishes_after_its_caller_gives_up",
            |c| c.request_reply,
            typed::handler_finishes_after_its_caller_gives_up
        ),
        case!(
            "style_matrix_sync_routes",
            |c| c.request_reply,
            style_matrix::sync_routes
        ),
        case!(
            "style_matrix_async_routes",
            always,
            style_matrix::async_routes
        ),
        case!(
            "final_refusal_is_dead_lettered_at_once",
            always,
            style_matrix::final_refusal_is_dead_lettered_at_once
        ),
        case!(
            "shutdown_loses_no_retrying_event",
            always,
            style_matrix::shutdown_loses_nothing
        ),
        case!(
            "shutdown_accounts_for_queued_events",
            always,
            shutdown::shutdown_accounts_for_queued_events
        ),
        #[cfg(feature = "outbox")]
        case!(
            "sync_send_defers_while_the_responder_is_away",
            |c| match c.no_responders {
                Support::Yes => c.absent_groups,
                no => no,
            },
            fallback::sync_send_defers_while_the_responder_is_away
        ),
        #[cfg(feature = "outbox")]
        case!(
            "outbox_delivers_to_a_group_away_and_back",
            |c| c.absent_groups,
            outbox::outbox_delivers_to_a_group_away_and_back
        ),
        #[cfg(feature = "outbox")]
        case!(
            "outbox_holds_events_for_a_group_away_while_another_takes_them",
            |c| c.absent_groups,
            outbox::outbox_holds_events_for_a_group_away_while_another_takes_them
        ),
        #[cfg(feature = "outbox")]
        case!(
            "dedup_runs_the_handler_once_per_message_id",
            always,
            dedup::dedup_runs_the_handler_once_per_message_id
        ),
    ]
}

/// Whether unreachable servers fail the run (`CI=true`) rather than skip.
pub fn unreachable_fails() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The fixture for `SWITCHBOARD_TEST_URL`, if it is set.
pub fn fixture_from_env() -> Option<Arc<dyn Fixture>> {
    let url = std::env::var(TEST_URL_ENV).ok()?;
    Some(Arc::new(UrlFixture::from_url(url)))
}

/// One trial per (fixture, case), named `FIXTURE::CASE`.
pub fn trials(fixtures: &[Arc<dyn Fixture>]) -> Vec<Trial> {
    let mut trials = Vec::new();
    for fixture in fixtures {
        for case in cases() {
            let fixture = fixture.clone();
            let name = format!("{}::{}", fixture.name(), case.name);
            trials.push(Trial::ignorable_test(name, move || {
                run_trial(fixture, case)
            }));
        }
    }
    trials
}

/// Parses the test-harness arguments and runs every case against every fixture.
pub fn run(fixtures: Vec<Arc<dyn Fixture>>) -> std::process::ExitCode {
    let arguments = Arguments::from_args();
    libtest_mimic::run(&arguments, trials(&fixtures)).exit_code()
}

fn run_trial(fixture: Arc<dyn Fixture>, case: Case) -> Result<Completion, Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("cannot start a tokio runtime: {e}")))?;
    runtime.block_on(async move {
        let probe = match fixture.connect().await {
            Ok(bus) => bus,
            Err(err) if unreachable_fails() => {
                return Err(Failed::from(format!(
                    "backend `{}` is unreachable and CI=true: {err}",
                    fixture.name()
                )))
            }
            Err(err) => {
                return Ok(Completion::ignored_with(format!(
                    "backend unreachable ({err}); with CI=true this fails"
                )))
            }
        };
        let support = (case.needs)(probe.capabilities());
        let _ = probe.close().await;
        if let Support::No(reason) = support {
            return Ok(Completion::ignored_with(reason));
        }
        match tokio::time::timeout(CASE_TIMEOUT, case.run(fixture.as_ref())).await {
            Ok(Ok(())) => Ok(Completion::Completed),
            Ok(Err(failure)) => Err(Failed::from(failure.0)),
            Err(_) => Err(Failed::from(format!(
                "case hung for more than {CASE_TIMEOUT:?}"
            ))),
        }
    })
}
