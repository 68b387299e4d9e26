//! Panic recovery: a handler that panics becomes a rejection marked as a
//! panic, so the route keeps serving and the caller gets an error reply.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use bytes::Bytes;

use super::context::RouteHandler;
use crate::handler::{Context, Rejection};
use crate::message::Message;

/// Runs the handler once, turning a panic into a rejection (while decoding
/// and extracting too, which run before the handler's future exists).
pub(super) async fn run_once<H: RouteHandler>(
    handler: &H,
    payload: &Bytes,
    handler_context: Context,
) -> Result<Message, Rejection> {
    let started =
        std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(payload, handler_context)));
    let running = match started {
        Ok(running) => running,
        Err(panic) => return Err(Rejection::panicked(panic_message(&panic))),
    };
    match AssertUnwindSafe(running).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => Err(Rejection::panicked(panic_message(&panic))),
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}
