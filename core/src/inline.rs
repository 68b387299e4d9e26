//! Answering a request inside the caller's task when its only recipient is a
//! `Service` route: no queue, no task hop and no reply channel between the
//! caller (or the HTTP connection) and the handler.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::BoxFuture;

use crate::message::Message;

/// A route that can answer a request in the caller's task.
pub trait InlineAnswer: Send + Sync + 'static {
    /// The reply to `message`, or `None` if the route stopped taking requests.
    /// The future waits for room under the route's concurrency limit.
    fn answer(
        self: Arc<Self>,
        subject: Arc<str>,
        message: Message,
        deadline: Option<Instant>,
    ) -> BoxFuture<'static, Option<Message>>;
}

/// Where a route installs its answerer: shared by a subscription and its hub
/// entry, empty while the subscription is read as a plain queue.
#[derive(Default)]
pub struct InlineSlot(RwLock<Option<Arc<dyn InlineAnswer>>>);

impl InlineSlot {
    /// Requests for this subscription are answered by `answerer` from now on.
    pub fn install(&self, answerer: Arc<dyn InlineAnswer>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(answerer);
    }

    /// Requests go through the subscription's queue again.
    pub fn remove(&self) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The installed answerer, if any.
    pub fn get(&self) -> Option<Arc<dyn InlineAnswer>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A handler's future that finishes even if its caller stops waiting: on
/// drop before completion (caller timed out, HTTP client hung up) the rest
/// runs on its own task, as a handler fed from a queue would. User code is
/// never cancelled halfway.
pub struct RunsToCompletion<T: Send + 'static>(Option<BoxFuture<'static, T>>);

impl<T: Send + 'static> RunsToCompletion<T> {
    pub fn new(future: BoxFuture<'static, T>) -> Self {
        RunsToCompletion(Some(future))
    }
}

impl<T: Send + 'static> Future for RunsToCompletion<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(future) = self.0.as_mut() else {
            panic!("RunsToCompletion polled after it completed");
        };
        let output = std::task::ready!(future.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(output)
    }
}

impl<T: Send + 'static> Drop for RunsToCompletion<T> {
    fn drop(&mut self) {
        if let Some(rest) = self.0.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(rest);
            }
        }
    }
}
