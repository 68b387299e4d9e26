//! Outgoing calls to peers: requests, event deliveries and snapshot exchanges.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::peer_urls::PeerUrls;
use super::wire::{self as http_wire, EVENTS, REQUESTS, SUBSCRIPTIONS};
use switchboard_core::error::{Error, Result};
use switchboard_core::message::Message;
use switchboard_core::wire;
use switchboard_mesh::Snapshot;
use switchboard_mesh::DELIVER;
use switchboard_mesh::{HttpTls, PeerCalls};

/// The backend name used in errors.
const BACKEND: &str = "http";

/// How long an idle pooled connection to a peer is kept for reuse.
const IDLE_CONNECTION_REUSE: Duration = Duration::from_secs(4);

/// A pooled HTTP/1.1 keep-alive client for talking to peers.
#[derive(Clone)]
pub(super) struct PeerClient {
    http: reqwest::Client,
    urls: PeerUrls,
    token: Option<String>,
    peer_timeout: Duration,
    /// The largest reply or snapshot body read from a peer (`max_body`).
    max_body: usize,
}

impl PeerClient {
    pub fn new(
        token: Option<String>,
        peer_timeout: Duration,
        max_body: usize,
        tls: Option<&HttpTls>,
    ) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            // Below the servers' idle cut-off (`header_timeout`, 10 s by default),
            // so a pooled connection is not reused just as the peer closes it.
            .pool_idle_timeout(IDLE_CONNECTION_REUSE)
            .connect_timeout(peer_timeout);
        if let Some(tls) = tls {
            builder = trust_peers(tls, builder)?;
        }
        let http = builder.build().map_err(|e| Error::backend(BACKEND, e))?;
        Ok(PeerClient {
            http,
            urls: PeerUrls::default(),
            token,
            peer_timeout,
            max_body,
        })
    }

    /// A POST of `prefix` (an absolute path) followed by `rest` to `peer`.
    fn post(&self, peer: &str, prefix: &'static str, rest: &str) -> reqwest::RequestBuilder {
        let builder = match self.urls.at(peer, prefix, rest) {
            Some(url) => self.http.post(url),
            // Not a URL: reqwest reports it as the call's error.
            None => self.http.post(format!("{peer}{prefix}{rest}")),
        };
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }
}

/// The client side of `https://`: trust `tls_ca` only (when given), and
/// present this service's certificate to peers that ask for one.
fn trust_peers(tls: &HttpTls, builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder> {
    let trust = tls.client_trust()?;
    let mut builder = builder.https_only(true);
    if let Some(ca) = trust.ca {
        builder = builder.tls_built_in_root_certs(false);
        for cert in ca {
            let cert = reqwest::Certificate::from_der(&cert)
                .map_err(|e| Error::config(format!("option `tls_ca`: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    let identity = reqwest::Identity::from_pem(&trust.identity)
        .map_err(|e| Error::config(format!("options `tls_cert`/`tls_key`: {e}")))?;
    Ok(builder.identity(identity))
}

#[async_trait]
impl PeerCalls for PeerClient {
    async fn request(
        &self,
        peer: &str,
        subject: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message> {
        let sent = message.payload.len();
        let response = self
            .post(peer, REQUESTS, subject)
            .headers(http_wire::http_headers(&message.headers))
            .header(
                reqwest::header::HeaderName::from_static(wire::TIMEOUT_MS),
                reqwest::header::HeaderValue::from(timeout.as_millis().max(1) as u64),
            )
            .timeout(timeout)
            .body(message.payload)
            .send()
            .await
            .map_err(|e| call_error(peer, subject, timeout, e))?;
        let status = response.status();
        let headers = http_wire::message_headers(response.headers());
        let body = read_bounded(response, self.max_body, peer)
            .await
            .map_err(|e| e.into_error(peer, subject, timeout))?;
        if status.is_success() {
            return Ok(Message {
                payload: body,
                headers,
            });
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(unauthorized(peer));
        }
        let mut reply = if headers.contains(wire::STATUS) {
            Message {
                payload: Bytes::new(),
                headers,
            }
        } else {
            // Not from a switchboard responder (a proxy, or the framework's own limit): map the status.
            let status_name =
                http_wire::status_for_code(status).unwrap_or(wire::STATUS_HANDLER_ERROR);
            let detail = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            wire::error_reply(status_name, format!("HTTP {status} from {peer}: {detail}"))
        };
        if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE {
            wire::with_sizes(&mut reply.headers, Some(sent), None);
        }
        Ok(reply)
    }

    async fn deliver(
        &self,
        peer: &str,
        subject: &str,
        message: &Message,
        deliver: &str,
    ) -> Result<()> {
        let response = self
            .post(peer, EVENTS, subject)
            .headers(http_wire::http_headers(&message.headers))
            .header(DELIVER, deliver)
            .timeout(self.peer_timeout)
            .body(message.payload.clone())
            .send()
            .await
            .map_err(|e| call_error(peer, subject, self.peer_timeout, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(unauthorized(peer));
        }
        if response
            .headers()
            .get(wire::STATUS)
            .is_some_and(|v| v == wire::STATUS_NO_RESPONDERS)
        {
            return Err(Error::NoResponders {
                subject: subject.to_owned(),
            });
        }
        if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE {
            let limit = response
                .headers()
                .get(wire::PAYLOAD_LIMIT)
                .and_then(|v| v.to_str().ok()?.parse().ok());
            return Err(Error::PayloadTooLarge {
                size: message.payload.len(),
                limit: limit.unwrap_or(0),
            });
        }
        let error = Error::backend(BACKEND, format!("{peer} answered HTTP {status}"));
        // A 5xx is transient: the mesh retries it like a refused connection.
        Err(if status.is_server_error() {
            Error::Connect {
                url: peer.to_owned(),
                source: error.into(),
            }
        } else {
            error
        })
    }

    async fn exchange(&self, peer: &str, snapshot: &Snapshot) -> Result<Snapshot> {
        let response = self
            .post(peer, SUBSCRIPTIONS, "")
            .json(snapshot)
            .timeout(self.peer_timeout)
            .send()
            .await
            .map_err(|e| call_error(peer, SUBSCRIPTIONS, self.peer_timeout, e))?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Err(unauthorized(peer));
        }
        if !response.status().is_success() {
            return Err(Error::backend(
                BACKEND,
                format!("{peer} answered HTTP {} to a snapshot", response.status()),
            ));
        }
        let body = read_bounded(response, self.max_body, peer)
            .await
            .map_err(|e| e.into_error(peer, SUBSCRIPTIONS, self.peer_timeout))?;
        serde_json::from_slice::<Snapshot>(&body)
            .map_err(|e| Error::codec(format!("snapshot from {peer}: {e}")))
    }
}

/// Why a peer's body was not read.
enum BodyError {
    Call(reqwest::Error),
    TooLarge(Error),
}

impl BodyError {
    fn into_error(self, peer: &str, subject: &str, timeout: Duration) -> Error {
        match self {
            BodyError::Call(err) => call_error(peer, subject, timeout, err),
            BodyError::TooLarge(err) => err,
        }
    }
}

/// Reads a peer's response body, no further than `limit` bytes: a peer (or
/// a stranger that announced itself as one) cannot make this service buffer
/// an endless reply.
async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
    peer: &str,
) -> std::result::Result<Bytes, BodyError> {
    let too_large = || {
        BodyError::TooLarge(Error::backend(
            BACKEND,
            format!(
                "{peer} sent a body larger than this service reads ({limit} bytes, `max_body`)"
            ),
        ))
    };
    if response
        .content_length()
        .is_some_and(|size| size > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Call)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        if body.is_empty() && response.content_length() == Some(chunk.len() as u64) {
            return Ok(chunk); // the whole body in one piece: no copy
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn unauthorized(peer: &str) -> Error {
    Error::backend(
        BACKEND,
        format!("{peer} rejected this service's bearer token (HTTP 401); check the `token` option"),
    )
}

fn call_error(peer: &str, subject: &str, timeout: Duration, err: reqwest::Error) -> Error {
    if err.is_timeout() {
        Error::Timeout {
            subject: subject.to_owned(),
            timeout,
        }
    } else if err.is_connect() {
        Error::Connect {
            url: peer.to_owned(),
            source: with_causes(&err).into(),
        }
    } else {
        Error::backend(BACKEND, with_causes(&err))
    }
}

/// An error with every cause behind it: reqwest's own text ("error sending
/// request") hides the one that matters ("invalid peer certificate: UnknownIssuer").
fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}
