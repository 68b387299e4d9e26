//! What a service does with a call from a peer or a client, whatever the wire
//! it came over: the HTTP and gRPC servers only translate to and from these.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::deliver::parse_deliver;
use super::directory::{Refused, Snapshot, Trust};
use super::settings::{parse_peer, Join};
use super::shared::Shared;
use switchboard_core::local::Targets;
use switchboard_core::message::Message;
use switchboard_core::{subject, wire};

/// Why an event was not taken.
#[derive(Debug)]
pub enum EventRefused {
    /// The subject is not a valid subject.
    InvalidSubject(String),
    /// The local subscribers' queues stayed full for `server_timeout`.
    QueuesFull,
    /// No local subscriber (of those `sb-deliver` names) takes the subject
    /// any more: the sender's view of this service is out of date.
    NoSubscriber,
}

/// Why a snapshot was not taken in.
#[derive(Debug)]
pub enum SnapshotRefused {
    /// The snapshot's service address is not a valid peer address.
    Invalid(String),
    /// The caller may not announce it, or this service knows as many peers as it may.
    Forbidden(String),
}

impl Shared {
    /// Answers a request with this service's own responders. The caller's
    /// timeout (the wire's own, else `sb-timeout-ms`) is honoured up to
    /// `server_timeout`, and one already spent is a `timeout` reply; every
    /// failure is an error reply with `sb-status`. Reserved headers a caller
    /// may not set are dropped (see [`wire::drop_foreign_reserved`]).
    pub async fn serve_request(
        &self,
        subject: &str,
        mut message: Message,
        caller_timeout: Option<Duration>,
    ) -> Message {
        if let Err(err) = subject::validate(subject) {
            return wire::error_reply(wire::STATUS_CODEC_ERROR, err.to_string());
        }
        let sent_timeout = message
            .headers
            .remove(wire::TIMEOUT_MS)
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(Duration::from_millis);
        wire::drop_foreign_reserved(&mut message.headers);
        let timeout = caller_timeout
            .or(sent_timeout)
            .unwrap_or(self.settings.server_timeout)
            .min(self.settings.server_timeout);
        match self
            .local
            .request(subject, message, timeout, Targets::All)
            .await
        {
            Ok(reply) => reply,
            Err(err) => wire::error_reply_for(&err),
        }
    }

    /// Hands an event to this service's subscribers: those `deliver` names
    /// (`sb-deliver`, set by switchboard publishers), or all of them.
    pub async fn serve_event(
        &self,
        subject: &str,
        mut message: Message,
        deliver: Option<&str>,
    ) -> Result<(), EventRefused> {
        subject::validate(subject).map_err(|e| EventRefused::InvalidSubject(e.to_string()))?;
        wire::drop_foreign_reserved(&mut message.headers);
        let chosen = deliver.map(parse_deliver);
        let targets = match &chosen {
            Some((plain, groups)) => Targets::Only {
                plain: *plain,
                groups,
            },
            None => Targets::All,
        };
        let queued = tokio::time::timeout(
            self.settings.server_timeout,
            self.local.publish(subject, message, targets),
        );
        match queued.await {
            Ok(0) => Err(EventRefused::NoSubscriber),
            Ok(_delivered) => Ok(()),
            Err(_) => Err(EventRefused::QueuesFull),
        }
    }

    /// Takes in a caller's snapshot and answers with this service's. An
    /// authenticated caller (token, or a client certificate under mutual TLS)
    /// is believed in full. Anyone else may only announce itself: the address
    /// in the snapshot must resolve to the address the call came from, the
    /// peers it lists are not learned, and with `join=configured` it must be a
    /// configured peer.
    pub async fn take_snapshot(
        &self,
        theirs: Snapshot,
        caller: SocketAddr,
    ) -> Result<Snapshot, SnapshotRefused> {
        let settings = &self.settings;
        let authenticated =
            settings.token.is_some() || settings.tls.as_ref().is_some_and(|tls| tls.client_auth);
        let trust = if authenticated {
            Trust::Full
        } else {
            if let Err(reason) = self.admits(&theirs.service, caller.ip()).await {
                tracing::warn!(%caller, service = %theirs.service.escape_debug(), reason, "{}: snapshot refused", self.backend);
                return Err(SnapshotRefused::Forbidden(reason));
            }
            Trust::OwnAddressOnly
        };
        match self.directory.merge(theirs, trust) {
            Ok(()) => Ok(self.snapshot()),
            Err(Refused::InvalidService(service)) => Err(SnapshotRefused::Invalid(format!(
                "`{service}` is not a service address: {}://HOST:PORT",
                self.backend
            ))),
            Err(Refused::TooManyPeers) => Err(SnapshotRefused::Forbidden(
                "this service knows as many peers as it may (`max_peers`)".into(),
            )),
        }
    }

    /// Whether an unauthenticated caller at `caller` may announce `service`.
    async fn admits(&self, service: &str, caller: IpAddr) -> Result<(), String> {
        let service = parse_peer(service)
            .map_err(|_| "the snapshot's service is not a HOST:PORT address".to_owned())?;
        if self.settings.join == Join::Configured && !self.directory.is_configured(&service) {
            return Err(format!(
                "`{service}` is not a configured peer, and this service takes only those without a token (`join=configured`)"
            ));
        }
        let url = url::Url::parse(&service).map_err(|e| e.to_string())?;
        let (host, port) = (
            url.host_str().unwrap_or_default().trim_matches(['[', ']']),
            url.port_or_known_default().unwrap_or(80),
        );
        let caller = caller.to_canonical();
        let matches = match host.parse::<IpAddr>() {
            Ok(ip) => ip.to_canonical() == caller,
            Err(_) => {
                // A name: resolved, bounded, so a stranger's made-up name cannot stall the server.
                let resolved = tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::lookup_host((host, port)),
                )
                .await;
                match resolved {
                    Ok(Ok(mut addresses)) => addresses.any(|a| a.ip().to_canonical() == caller),
                    _ => false,
                }
            }
        };
        if matches {
            Ok(())
        } else {
            Err(format!(
                "the snapshot announces `{service}` but came from {caller}: without a token a service may announce only its own address"
            ))
        }
    }
}
