//! Outgoing calls to peers over gRPC: one multiplexed HTTP/2 channel per peer.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

use super::convert;
use super::proto::mesh_client::MeshClient;
use super::proto::switchboard_client::SwitchboardClient;
use super::status;
use switchboard_core::error::{Error, Result};
use switchboard_core::message::Message;
use switchboard_core::wire;
use switchboard_mesh::HttpTls;
use switchboard_mesh::{PeerCalls, Snapshot, DELIVER};

/// Calls peers over gRPC, with the bearer token on every call.
pub(super) struct GrpcPeers {
    channels: RwLock<HashMap<String, Channel>>,
    /// `grpcs://`: trust `tls_ca` (or the webpki roots) and present `tls_cert`.
    tls: Option<ClientTlsConfig>,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
    peer_timeout: Duration,
    max_body: usize,
}

impl GrpcPeers {
    pub fn new(
        token: Option<&str>,
        peer_timeout: Duration,
        max_body: usize,
        tls: Option<&HttpTls>,
    ) -> Result<Self> {
        let token = token
            .map(|token| {
                MetadataValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| Error::config("option `token` must be printable ASCII"))
            })
            .transpose()?;
        let tls = tls
            .map(|tls| {
                let pems = tls.client_pems()?;
                let config =
                    ClientTlsConfig::new().identity(Identity::from_pem(pems.cert, pems.key));
                Ok::<_, Error>(match pems.ca {
                    Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
                    None => config.with_webpki_roots(),
                })
            })
            .transpose()?;
        Ok(GrpcPeers {
            channels: RwLock::new(HashMap::new()),
            tls,
            token,
            peer_timeout,
            max_body,
        })
    }

    /// The peer's channel; made on first use, connected lazily and reconnected by tonic.
    fn channel(&self, peer: &str) -> Result<Channel> {
        if let Some(channel) = self
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(peer)
        {
            return Ok(channel.clone());
        }
        let mut endpoint = Endpoint::from_shared(peer.to_owned())
            .map_err(|e| Error::config(format!("peer `{peer}` is not a gRPC address: {e}")))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| Error::config(format!("TLS for peer `{peer}`: {e}")))?;
        }
        let channel = endpoint
            .connect_timeout(self.peer_timeout)
            .tcp_nodelay(true)
            // TCP keep-alive finds a vanished peer without HTTP/2 pings on every poll.
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .connect_lazy();
        self.channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer.to_owned(), channel.clone());
        Ok(channel)
    }

    fn switchboard(&self, peer: &str) -> Result<SwitchboardClient<Channel>> {
        Ok(SwitchboardClient::new(self.channel(peer)?)
            .max_decoding_message_size(self.max_body)
            .max_encoding_message_size(self.max_body))
    }

    fn request_of<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        request
    }
}

/// A call that did not finish within `timeout`.
fn timed_out(subject: &str, timeout: Duration) -> Error {
    Error::Timeout {
        subject: subject.to_owned(),
        timeout,
    }
}

#[async_trait]
impl PeerCalls for GrpcPeers {
    async fn request(
        &self,
        peer: &str,
        subject: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message> {
        let mut client = self.switchboard(peer)?;
        let sent = message.payload.len();
        let request = self.request_of(convert::envelope(subject, message), timeout);
        match tokio::time::timeout(timeout, client.request(request)).await {
            Err(_) => Err(timed_out(subject, timeout)),
            Ok(Ok(reply)) => Ok(convert::message(reply.into_inner())),
            Ok(Err(status))
                if status.code() == Code::DeadlineExceeded && !has_sb_status(&status) =>
            {
                Err(timed_out(subject, timeout))
            }
            Ok(Err(status)) => {
                let mut reply = status::reply_for(status, peer, subject)?;
                if reply.headers.get(wire::STATUS) == Some(wire::STATUS_PAYLOAD_TOO_LARGE) {
                    wire::with_sizes(&mut reply.headers, Some(sent), None);
                }
                Ok(reply)
            }
        }
    }

    async fn deliver(
        &self,
        peer: &str,
        subject: &str,
        message: &Message,
        deliver: &str,
    ) -> Result<()> {
        let mut client = self.switchboard(peer)?;
        let mut request = self.request_of(
            convert::envelope(subject, message.clone()),
            self.peer_timeout,
        );
        let targets = MetadataValue::try_from(deliver)
            .map_err(|_| Error::codec(format!("`{deliver}` is not a delivery list")))?;
        request.metadata_mut().insert(DELIVER, targets);
        let status = match tokio::time::timeout(self.peer_timeout, client.publish(request)).await {
            Err(_) => return Err(timed_out(subject, self.peer_timeout)),
            Ok(Ok(_accepted)) => return Ok(()),
            Ok(Err(status)) => status,
        };
        match status.code() {
            Code::Unauthenticated => Err(status::unauthorized(peer)),
            // The peer has no subscriber for it any more (its snapshot here is out of date).
            Code::NotFound => Err(Error::NoResponders {
                subject: subject.to_owned(),
            }),
            Code::ResourceExhausted | Code::OutOfRange => Err(Error::PayloadTooLarge {
                size: message.payload.len(),
                limit: status
                    .metadata()
                    .get(wire::PAYLOAD_LIMIT)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0),
            }),
            // Refused connection, or the subscribers' queues full: the mesh retries.
            Code::Unavailable | Code::DeadlineExceeded => Err(Error::Connect {
                url: peer.to_owned(),
                source: status.message().to_owned().into(),
            }),
            code => Err(Error::backend(
                super::convert::BACKEND,
                format!("{peer} answered gRPC {code:?}: {}", status.message()),
            )),
        }
    }

    async fn exchange(&self, peer: &str, snapshot: &Snapshot) -> Result<Snapshot> {
        let mut client = MeshClient::new(self.channel(peer)?);
        let request = self.request_of(convert::snapshot_out(snapshot), self.peer_timeout);
        let answer = tokio::time::timeout(self.peer_timeout, client.exchange(request))
            .await
            .map_err(|_| timed_out("snapshot exchange", self.peer_timeout))?;
        match answer {
            Ok(theirs) => Ok(convert::snapshot_in(theirs.into_inner())),
            Err(status) if status.code() == Code::Unauthenticated => {
                Err(status::unauthorized(peer))
            }
            Err(status) if status.code() == Code::Unavailable => Err(Error::Connect {
                url: peer.to_owned(),
                source: status.message().to_owned().into(),
            }),
            Err(status) => Err(Error::backend(
                super::convert::BACKEND,
                format!(
                    "{peer} answered gRPC {:?} to a snapshot: {}",
                    status.code(),
                    status.message()
                ),
            )),
        }
    }
}

fn has_sb_status(status: &tonic::Status) -> bool {
    status.metadata().contains_key(wire::STATUS)
}
