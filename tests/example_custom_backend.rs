//! A backend registered from outside the crate is found by `connect(url)` and
//! passes the whole conformance suite through that path.

#[path = "../examples/custom_backend/adapter.rs"]
mod adapter;

use std::process::ExitCode;
use std::sync::Arc;

use switchboard::conformance::{self, UrlFixture};

fn main() -> ExitCode {
    adapter::register().expect("the counting scheme registers");
    // Registering again is a no-op; taking a built-in scheme is refused.
    adapter::register().expect("registering twice is a no-op");
    let clash = switchboard::transport::register(switchboard::transport::BackendInfo::new(
        "impostor",
        &["memory"],
        |_| Box::pin(async { Err(switchboard::Error::Closed) }),
    ));
    assert!(clash.is_err(), "a built-in scheme cannot be taken over");
    conformance::run(vec![Arc::new(UrlFixture::new(
        "counting",
        "counting://conformance",
    ))])
}
