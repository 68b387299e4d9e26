//! The server's outer layer, one service around the routes: what can be
//! refused before the body is read (a declared size over `max_body`, a
//! missing or wrong bearer token), the `server_timeout` of the whole
//! request, and the documented shape of every error the framework answers.
//! Requests and events (`POST /requests/{subject}`, `POST /events/{subject}`)
//! go from here straight to their handler, past the router's path matching,
//! path parameters and boxed handler future; everything else goes through
//! the routes.
//!
//! One service rather than a `tower` layer each: a request answered in the
//! first poll (a typed route answered inline) allocates nothing here and
//! arms no timer; the timer is armed only once the request waits.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use tokio::time::Sleep;
use tower_service::Service;

use super::responses::{documented_error, error_response, reply_response_with};
use super::wire::{self as http_wire, EVENTS, REQUESTS};
use switchboard_core::error::Error;
use switchboard_core::web::{auth, body_limit};
use switchboard_core::wire;
use switchboard_mesh::Shared;

/// The routes behind the checks, the timeout and the error shape; `direct`
/// serves requests and events without them.
pub(super) struct Gate<S, D> {
    routes: S,
    direct: fn(Arc<Shared>, Request) -> D,
    shared: Arc<Shared>,
}

impl<S: Clone, D> Clone for Gate<S, D> {
    fn clone(&self) -> Self {
        Gate {
            routes: self.routes.clone(),
            direct: self.direct,
            shared: self.shared.clone(),
        }
    }
}

impl<S, D> Gate<S, D> {
    pub(super) fn new(
        routes: S,
        direct: fn(Arc<Shared>, Request) -> D,
        shared: Arc<Shared>,
    ) -> Self {
        Gate {
            routes,
            direct,
            shared,
        }
    }
}

/// Whether `request` is a request or an event for a subject: what the
/// routes `POST /requests/{subject}` and `POST /events/{subject}` match (a
/// subject is one path segment, not empty).
fn is_direct(request: &Request) -> bool {
    if request.method() != Method::POST {
        return false;
    }
    let path = request.uri().path();
    let subject = path
        .strip_prefix(REQUESTS)
        .or_else(|| path.strip_prefix(EVENTS));
    subject.is_some_and(|subject| !subject.is_empty() && !subject.contains('/'))
}

impl<S, D> Service<Request> for Gate<S, D>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    D: Future<Output = Response>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Gated<S::Future, D>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.routes.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let mut gated = Gated {
            routed: None,
            direct: None,
            refused: None,
            timer: None,
            timeout: self.shared.settings.server_timeout,
            shared: self.shared.clone(),
        };
        // Refusals made here carry `sb-status` already: nothing to document.
        if let Some(refused) = refused_before_body(&self.shared, &request) {
            gated.refused = Some(refused);
        } else if is_direct(&request) {
            gated.direct = Some((self.direct)(self.shared.clone(), request));
        } else {
            gated.routed = Some(self.routes.call(request));
        }
        gated
    }
}

pin_project_lite::pin_project! {
    /// A request on its way through the routes or straight to its handler,
    /// or refused at the gate.
    pub(super) struct Gated<F, D> {
        #[pin]
        routed: Option<F>,
        #[pin]
        direct: Option<D>,
        refused: Option<Response>,
        // Armed at the first poll that finds the request still being served.
        #[pin]
        timer: Option<Sleep>,
        timeout: Duration,
        shared: Arc<Shared>,
    }
}

impl<F, D> Future for Gated<F, D>
where
    F: Future<Output = Result<Response, Infallible>>,
    D: Future<Output = Response>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let served = if let Some(direct) = this.direct.as_mut().as_pin_mut() {
            direct.poll(cx)
        } else if let Some(routed) = this.routed.as_mut().as_pin_mut() {
            routed.poll(cx).map(|Ok(response)| response)
        } else {
            // `None` only if polled again after it finished: answered, not a panic.
            let refused = this.refused.take().unwrap_or_else(|| {
                let mut again = Response::new(Default::default());
                *again.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                again
            });
            return Poll::Ready(Ok(refused));
        };
        if let Poll::Ready(response) = served {
            this.direct.set(None);
            this.routed.set(None);
            return Poll::Ready(Ok(documented_error(this.shared, response)));
        }
        if this.timer.is_none() {
            this.timer.set(Some(tokio::time::sleep(*this.timeout)));
        }
        let Some(timer) = this.timer.as_pin_mut() else {
            return Poll::Pending;
        };
        std::task::ready!(timer.poll(cx));
        // What the request waited on (its body, its handler) is dropped.
        this.direct.set(None);
        this.routed.set(None);
        let mut timed_out = Response::new(Default::default());
        *timed_out.status_mut() = StatusCode::REQUEST_TIMEOUT;
        Poll::Ready(Ok(documented_error(this.shared, timed_out)))
    }
}

/// What can be refused before the body is read: a declared size over
/// `max_body` (answered at once, so an `Expect: 100-continue` client never
/// gets `100 Continue`), and a missing or wrong bearer token.
fn refused_before_body(shared: &Shared, request: &Request) -> Option<Response> {
    let settings = &shared.settings;
    let declared = body_limit::declared_length(request.headers());
    if let Some(size) = declared.filter(|size| *size > settings.max_body as u64) {
        let too_large = Error::PayloadTooLarge {
            size: usize::try_from(size).unwrap_or(usize::MAX),
            limit: settings.max_body,
        };
        return Some(body_limit::close_after(reply_response_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            wire::error_reply_for(&too_large),
        )));
    }
    if let Some(token) = &settings.token {
        if !auth::bearer_matches(auth::authorization(request.headers()), token) {
            return Some(auth::challenge(error_response(
                StatusCode::UNAUTHORIZED,
                http_wire::STATUS_UNAUTHORIZED,
                "missing or wrong bearer token",
            )));
        }
    }
    None
}
