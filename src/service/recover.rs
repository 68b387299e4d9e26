//! Panic recovery: a handler that panics becomes a rejection marked as a
//! panic, so the route keeps serving and the caller gets an error reply.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use super::context::ErasedHandler;
use crate::handler::{Context, Rejection};
use crate::message::Message;

/// Runs the handler once, turning a panic into a rejection.
pub(super) async fn run_once(
    handler: &ErasedHandler,
    message: Message,
    handler_context: Context,
) -> Result<Message, Rejection> {
    match AssertUnwindSafe(handler(message, handler_context))
        .catch_unwind()
        .await
    {
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
