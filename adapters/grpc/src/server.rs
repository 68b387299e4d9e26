//! This service's gRPC server: `switchboard.v1.Switchboard` for peers and
//! clients in any language, `switchboard.v1.Mesh` for snapshot exchanges.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use futures_core::Stream;
use tokio::sync::{mpsc, Semaphore};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use super::proto::mesh_server::{Mesh, MeshServer};
use super::proto::switchboard_server::{Switchboard, SwitchboardServer};
use super::proto::{self, Accepted, DescribeRequest, Description, Envelope, SubscribeRequest};
use super::{convert, status};
use switchboard_core::error::Error;
use switchboard_core::web::auth;
use switchboard_core::{subject, wire};
use switchboard_mesh::{App, EventRefused, Shared, SnapshotRefused, DELIVER};

/// Room for an envelope's subject and headers on top of `max_body`: tonic's
/// own limit stops only what is far too large, and a payload over `max_body`
/// is refused here, with its size and the limit as numbers.
const ENVELOPE_ALLOWANCE: usize = 64 * 1024;

/// The routes of a service: both gRPC services behind the token check, with
/// the message size limit (`max_body` on the payload) both ways.
pub(super) fn router(shared: Arc<Shared>) -> App {
    let max_body = shared.settings.max_body.saturating_add(ENVELOPE_ALLOWANCE);
    let token = shared.settings.token.clone();
    let service = Service {
        shared,
        streams: Arc::new(Semaphore::new(MAX_STREAMS)),
    };
    let switchboard = SwitchboardServer::new(service.clone())
        .max_decoding_message_size(max_body)
        .max_encoding_message_size(max_body);
    let mesh = MeshServer::new(service)
        .max_decoding_message_size(max_body)
        .max_encoding_message_size(max_body);
    let routes = match token {
        // Without a token there is nothing to check: no interceptor on the hot path.
        None => Routes::new(switchboard).add_service(mesh),
        Some(token) => {
            let token: Arc<str> = token.into();
            let check = move |request: Request<()>| check_token(&token, request);
            Routes::new(InterceptedService::new(switchboard, check.clone()))
                .add_service(InterceptedService::new(mesh, check))
        }
    };
    App::Routes(routes.into_axum_router())
}

/// Whether `path` calls the mesh service (`/switchboard.v1.Mesh/…`), whose
/// snapshot exchange reads the caller's address.
pub(super) fn is_mesh_call(path: &str) -> bool {
    use tonic::server::NamedService;
    path.strip_prefix('/')
        .and_then(|rest| rest.strip_prefix(MeshServer::<Service>::NAME))
        .is_some_and(|method| method.starts_with('/'))
}

/// With `token` set, every call must carry `authorization: Bearer TOKEN`.
fn check_token(token: &str, request: Request<()>) -> Result<Request<()>, Status> {
    let presented = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth::bearer_matches(presented, token) {
        Ok(request)
    } else {
        Err(Status::unauthenticated("missing or wrong bearer token"))
    }
}

/// Subscribe streams one service serves at once; more are refused with
/// RESOURCE_EXHAUSTED, so strangers cannot pile up subscriptions.
pub(super) const MAX_STREAMS: usize = 1024;

/// Both services over the mesh's shared state.
#[derive(Clone)]
struct Service {
    shared: Arc<Shared>,
    /// One permit per open Subscribe stream.
    streams: Arc<Semaphore>,
}

impl Service {
    /// Refuses a payload over `max_body` with RESOURCE_EXHAUSTED, its size and the limit.
    fn check_size(&self, envelope: &Envelope) -> Result<(), Status> {
        let limit = self.shared.settings.max_body;
        if envelope.payload.len() <= limit {
            return Ok(());
        }
        let too_large = Error::PayloadTooLarge {
            size: envelope.payload.len(),
            limit,
        };
        Err(status::from_error_reply(&wire::error_reply_for(&too_large)))
    }
}

#[tonic::async_trait]
impl Switchboard for Service {
    async fn request(&self, request: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let timeout = status::grpc_timeout(request.metadata());
        let envelope = request.into_inner();
        self.check_size(&envelope)?;
        let subject = envelope.subject.clone();
        let message = convert::message(envelope);
        let reply = self.shared.serve_request(&subject, message, timeout).await;
        if reply.headers.contains(wire::STATUS) {
            return Err(status::from_error_reply(&reply));
        }
        Ok(Response::new(convert::envelope(&subject, reply)))
    }

    async fn publish(&self, request: Request<Envelope>) -> Result<Response<Accepted>, Status> {
        let deliver = request
            .metadata()
            .get(DELIVER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let envelope = request.into_inner();
        self.check_size(&envelope)?;
        let subject = envelope.subject.clone();
        match self
            .shared
            .serve_event(&subject, convert::message(envelope), deliver.as_deref())
            .await
        {
            Ok(()) => Ok(Response::new(Accepted {})),
            Err(EventRefused::InvalidSubject(reason)) => {
                Err(status::refusal(wire::STATUS_CODEC_ERROR, reason))
            }
            // Transient: a switchboard publisher retries it.
            Err(EventRefused::QueuesFull) => Err(Status::unavailable(
                "subscribers did not take the event in time (their queues are full)",
            )),
            Err(EventRefused::NoSubscriber) => Err(status::refusal(
                wire::STATUS_NO_RESPONDERS,
                "no subscriber here takes events on this subject",
            )),
        }
    }

    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<Envelope, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let SubscribeRequest { subject, group } = request.into_inner();
        subject::validate_pattern(&subject)
            .map_err(|e| status::refusal(wire::STATUS_CODEC_ERROR, e.to_string()))?;
        let group = Some(group).filter(|g| !g.is_empty());
        if let Some(group) = &group {
            subject::validate_group(group)
                .map_err(|e| status::refusal(wire::STATUS_CODEC_ERROR, e.to_string()))?;
        }
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this service already serves {MAX_STREAMS} Subscribe streams"
            ))
        })?;
        let mut subscription = self.shared.subscribe(&subject, group.as_deref()).await;
        // A task drains the subscription whatever the client's pace, so a slow
        // or stalled stream never holds up publishers: when its buffer is
        // full the stream ends with RESOURCE_EXHAUSTED, and the client knows
        // it missed events (as a NATS slow consumer is cut off).
        let (sender, receiver) = mpsc::channel(self.shared.settings.buffer);
        tokio::spawn(async move {
            let _permit = permit;
            let fell_behind = loop {
                let incoming = tokio::select! {
                    incoming = subscription.next() => incoming,
                    () = sender.closed() => return, // the client went away
                };
                let Some(mut incoming) = incoming else { return };
                if incoming.expects_reply() {
                    // A stream takes events, not requests: it lets a request go
                    // unanswered, so another responder's reply wins (and with no
                    // other, the requester hears at once that nobody answered).
                    continue;
                }
                let subject = incoming.subject().to_owned();
                let event = convert::envelope(&subject, incoming.take_message());
                match sender.try_send(Ok(event)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                    Err(mpsc::error::TrySendError::Full(_)) => break subject,
                };
            };
            // Unsubscribed first, so nothing waits on this stream any more;
            // the client reads why after the events it has not read yet.
            drop(subscription);
            tracing::warn!(subject = %fell_behind, "grpc: a Subscribe stream fell behind by a full buffer; ended");
            let behind = Status::resource_exhausted(
                "this stream fell behind by a full buffer of events and was ended; subscribe again",
            );
            let _ = sender.send(Err(behind)).await;
        });
        let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let item = receiver.recv().await?;
            Some((item, receiver))
        });
        Ok(Response::new(Box::pin(events)))
    }

    async fn describe(
        &self,
        request: Request<DescribeRequest>,
    ) -> Result<Response<Description>, Status> {
        let DescribeRequest { service } = request.into_inner();
        if service.is_empty() {
            return Ok(Response::new(Description {
                services: self.shared.documented_services(),
                asyncapi: Default::default(),
            }));
        }
        match self.shared.document(&service) {
            Some(document) => Ok(Response::new(Description {
                services: vec![service],
                asyncapi: document,
            })),
            None => Err(Status::not_found(
                "no service of that name publishes a document here",
            )),
        }
    }
}

#[tonic::async_trait]
impl Mesh for Service {
    async fn exchange(
        &self,
        request: Request<proto::Snapshot>,
    ) -> Result<Response<proto::Snapshot>, Status> {
        let caller = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| *address)
            .ok_or_else(|| Status::internal("the caller's address is unknown"))?;
        let theirs = convert::snapshot_in(request.into_inner());
        match self.shared.take_snapshot(theirs, caller).await {
            Ok(ours) => Ok(Response::new(convert::snapshot_out(&ours))),
            Err(SnapshotRefused::Invalid(reason)) => {
                Err(status::refusal(wire::STATUS_CODEC_ERROR, reason))
            }
            Err(SnapshotRefused::Forbidden(reason)) => Err(Status::permission_denied(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_mesh_call;

    #[test]
    fn only_the_mesh_service_gets_the_callers_address() {
        assert!(is_mesh_call("/switchboard.v1.Mesh/Exchange"));
        assert!(!is_mesh_call("/switchboard.v1.Switchboard/Request"));
        assert!(!is_mesh_call("/switchboard.v1.MeshX/Exchange"));
        assert!(!is_mesh_call("switchboard.v1.Mesh/Exchange"));
    }
}
