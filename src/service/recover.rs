//! Panic recovery: a handler that panics becomes a rejection marked as a
//! panic, so the route keeps serving and the caller gets an error reply.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;

use super::context::RouteHandler;
use crate::handler::{Received, Rejection};
use crate::message::Message;

/// Runs the handler once, turning a panic into a rejection (while decoding
/// and extracting too, which run at the first poll, before the handler's
/// future exists).
pub(super) fn run_once<'a, H: RouteHandler>(
    handler: &'a H,
    payload: &'a Bytes,
    received: Received<'a>,
) -> impl Future<Output = Result<Message, Rejection>> + Send + 'a {
    RunOnce::Start {
        start: Some(move || handler.call(payload, received)),
    }
}

pin_project_lite::pin_project! {
    /// The handler's call before its first poll, then its future in the
    /// same place: a future the size of the larger of the two, where an
    /// `async fn` kept both (and the call's result) side by side.
    #[project = State]
    enum RunOnce<S, F> {
        Start { start: Option<S> },
        Running { #[pin] running: F },
    }
}

impl<S, F> Future for RunOnce<S, F>
where
    S: FnOnce() -> F,
    F: Future<Output = Result<Message, Rejection>>,
{
    type Output = Result<Message, Rejection>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // One guard covers the call and the poll: a handler that finishes
        // in its first poll crosses one unwinding boundary, not two.
        let polled = catch_unwind(AssertUnwindSafe(|| {
            if let State::Start { start } = self.as_mut().project() {
                let Some(start) = start.take() else {
                    return Poll::Ready(Err(Rejection::panicked(
                        "handler polled again after it panicked",
                    )));
                };
                let running = start();
                self.set(RunOnce::Running { running });
            }
            match self.as_mut().project() {
                State::Running { running } => running.poll(cx),
                State::Start { .. } => unreachable!("the handler's future was just set"),
            }
        }));
        match polled {
            Ok(poll) => poll,
            Err(panic) => Poll::Ready(Err(Rejection::panicked(panic_message(&panic)))),
        }
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}
