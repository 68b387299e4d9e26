//! `MeshTransport`: a service with its own server, calling its peers over the
//! wire its backend chose (HTTP/1.1 with reqwest, or gRPC with tonic).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::deliver::format_deliver;
use super::directory::{Delivery, Directory, EventPlan, Holder};
use super::listener::{self, ConnectionLimits};
use super::settings::HttpSettings;
use super::shared::{Shared, Wire};
use switchboard_core::capabilities::{Capabilities, Support};
use switchboard_core::drain::DrainGate;
use switchboard_core::error::{DeliveryFailure, Error, Result};
use switchboard_core::local::{LocalRouter, Targets};
use switchboard_core::message::Message;
use switchboard_core::subscription::Subscription;
use switchboard_core::transport::{GroupAddress, Reach, Recipients, Transport};

/// A service of the mesh: its own server for incoming requests and events,
/// and a client for its peers, both on the [`Wire`] its backend chose. See
/// `adapters/http/docs.md` for the guarantees.
///
/// The server runs until `close()`, or until the transport and every
/// subscription made through it are dropped.
pub struct MeshTransport {
    shared: Arc<Shared>,
    gate: DrainGate,
    local_address: SocketAddr,
    running: Arc<ServerRunning>,
    server: Mutex<Option<JoinHandle<()>>>,
    capabilities: Capabilities,
}

/// Keeps the server and the sync task running while held; stops them when the last holder goes.
struct ServerRunning(watch::Sender<bool>);

impl ServerRunning {
    fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl Drop for ServerRunning {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A subscription's stream that keeps the server running as long as it lives.
struct KeepServing {
    subscription: Subscription,
    _running: Arc<ServerRunning>,
}

impl futures_core::Stream for KeepServing {
    type Item = switchboard_core::incoming::Incoming;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<switchboard_core::incoming::Incoming>> {
        std::pin::Pin::new(&mut self.subscription).poll_next(cx)
    }
}

impl MeshTransport {
    /// Starts a service of the mesh that talks over `wire`.
    pub async fn start(settings: HttpSettings, wire: Wire) -> Result<Self> {
        let backend = wire.backend;
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|e| {
                // Two services given one URL: say which setting makes them differ.
                let hint = match e.kind() {
                    std::io::ErrorKind::AddrInUse => format!(
                        "; another process (or another service of this one) listens on {}: give each service its own port with `[services.NAME] url` in the settings file or SWITCHBOARD_URL_<SERVICE>, or port 0 for any free one",
                        settings.listen
                    ),
                    _ => String::new(),
                };
                Error::Connect {
                    url: format!("{}://{}", wire.scheme, settings.listen),
                    source: format!("cannot listen: {e}{hint}").into(),
                }
            })?;
        let local_address = listener
            .local_addr()
            .map_err(|e| Error::backend(backend, e))?;
        let scheme = wire.scheme;
        let self_url = settings
            .advertise
            .clone()
            .unwrap_or_else(|| advertised_url(scheme, local_address));
        let acceptor = settings
            .tls
            .as_ref()
            .map(|tls| tls.acceptor(wire.protocol))
            .transpose()?;
        let local = LocalRouter::private();
        let shared = Arc::new(Shared {
            client: wire.client,
            backend,
            directory: Directory::new(self_url.clone(), &settings.peers, settings.max_peers),
            owner: local.next_id(),
            local,
            incarnation: incarnation(),
            self_url,
            announced: AtomicU64::new(0),
            leaving: AtomicBool::new(false),
            documents: std::sync::RwLock::default(),
            settings,
        });
        let (shutdown, stopped) = watch::channel(false);
        let app = (wire.router)(shared.clone());
        let limits = ConnectionLimits {
            header_timeout: shared.settings.header_timeout,
            max_connections: shared.settings.max_connections,
            max_header_bytes: 64 * 1024,
        };
        let server = tokio::spawn(listener::serve(
            listener,
            (app, wire.needs_caller_address),
            wire.protocol,
            acceptor,
            limits,
            stopped.clone(),
        ));
        tokio::spawn(keep_in_sync(shared.clone(), stopped));
        shared.announce().await;
        tracing::debug!(address = %local_address, url = %shared.self_url, "{backend}: service started");
        let mut capabilities = Capabilities::full(backend, shared.settings.max_body);
        capabilities.acknowledgements = Support::No(
            "delivery is synchronous: publish returns once every subscriber's server accepted the event, and nothing is stored for redelivery",
        );
        Ok(MeshTransport {
            shared,
            gate: DrainGate::new(),
            local_address,
            running: Arc::new(ServerRunning(shutdown)),
            server: Mutex::new(Some(server)),
            capabilities,
        })
    }

    /// The base URL peers reach this service at.
    pub fn url(&self) -> &str {
        &self.shared.self_url
    }

    async fn request_remote(
        &self,
        subject: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message> {
        let responders = self.shared.directory.responders(subject);
        let mut last_error = None;
        let mut message = Some(message);
        for (index, peer) in responders.iter().enumerate() {
            // The last responder gets the message itself: no copy on the usual path.
            let attempt = match index + 1 == responders.len() {
                true => message.take().unwrap_or_default(),
                false => message.clone().unwrap_or_default(),
            };
            match self
                .shared
                .client
                .request(peer, subject, attempt, timeout)
                .await
            {
                Err(err @ Error::Connect { .. }) => {
                    // Fail over to the next responder; report this one if none answers.
                    self.shared.directory.mark_unreachable(peer);
                    last_error = Some(err);
                }
                other => return other,
            }
        }
        Err(last_error.unwrap_or_else(|| Error::NoResponders {
            subject: subject.to_owned(),
        }))
    }

    /// Delivers to one holder; who took it. A peer that accepted took all
    /// of its delivery; here, each subscription's own answer counts.
    async fn deliver(
        &self,
        subject: &str,
        message: &Message,
        holder: &Holder,
        delivery: &Delivery,
    ) -> Result<Recipients> {
        match holder {
            Holder::Local => {
                let targets = Targets::Only {
                    plain: delivery.plain,
                    groups: &delivery.groups,
                };
                let taken = self
                    .shared
                    .local
                    .publish_to(subject, message.clone(), targets)
                    .await;
                match taken.plain || !taken.groups.is_empty() {
                    true => Ok(taken),
                    // Unsubscribed since the plan was made: like a peer's "no subscriber here".
                    false => Err(Error::NoResponders {
                        subject: subject.to_owned(),
                    }),
                }
            }
            Holder::Peer(peer) => {
                let deliver = format_deliver(delivery.plain, &delivery.groups);
                self.shared
                    .deliver_to_peer(peer, subject, message, &deliver)
                    .await?;
                Ok(Recipients::new(delivery.plain, delivery.groups.clone()))
            }
        }
    }

    /// Delivers to every holder at once; a failed holder's groups go to another
    /// member. Says who took it, and which deliveries failed (a holder that
    /// answered it has no subscriber any more is not a failure: this
    /// service's view of it was out of date).
    async fn fan_out(
        &self,
        subject: &str,
        message: Message,
        plan: EventPlan,
    ) -> (Recipients, Vec<DeliveryFailure>) {
        let attempts = plan.deliveries.iter().map(|(holder, delivery)| {
            let message = &message;
            async move {
                (
                    holder,
                    delivery,
                    self.deliver(subject, message, holder, delivery).await,
                )
            }
        });
        let mut failed = Vec::new();
        let mut taken = Recipients::default();
        for (holder, delivery, result) in join_all(attempts).await {
            let err = match result {
                Ok(took) => {
                    taken.plain |= took.plain;
                    // A group whose member here left since the plan was made goes to another member.
                    for group in delivery.groups.iter().filter(|g| !took.groups.contains(g)) {
                        if self
                            .fail_over(subject, &message, group, holder, &plan)
                            .await
                        {
                            taken.groups.push(group.clone());
                        }
                    }
                    taken.groups.extend(took.groups);
                    continue;
                }
                Err(err) => err,
            };
            let peer = match holder {
                Holder::Peer(peer) => peer.clone(),
                Holder::Local => "local".to_owned(),
            };
            let gone = matches!(err, Error::NoResponders { .. });
            if !gone {
                self.shared.directory.mark_unreachable(&peer);
            }
            for group in &delivery.groups {
                if self
                    .fail_over(subject, &message, group, holder, &plan)
                    .await
                {
                    taken.groups.push(group.clone());
                } else if !gone {
                    failed.push(DeliveryFailure {
                        peer: format!("{peer} (group {})", group.1),
                        reason: err.to_string(),
                    });
                }
            }
            if delivery.plain && !gone {
                failed.push(DeliveryFailure {
                    peer,
                    reason: err.to_string(),
                });
            }
        }
        (taken, failed)
    }

    async fn fail_over(
        &self,
        subject: &str,
        message: &Message,
        group: &(String, String),
        failed_holder: &Holder,
        plan: &EventPlan,
    ) -> bool {
        let others = plan.group_holders[group]
            .iter()
            .filter(|h| *h != failed_holder);
        for holder in others {
            let delivery = Delivery {
                plain: false,
                groups: vec![group.clone()],
            };
            if self
                .deliver(subject, message, holder, &delivery)
                .await
                .is_ok()
            {
                return true;
            }
        }
        false
    }
}

/// Announces subscription changes, and keeps asking unreachable peers until they answer.
async fn keep_in_sync(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut changes = shared.local.changes();
    let mut retry = tokio::time::interval(shared.settings.sync_interval);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = switchboard_core::drain::stop_requested(&mut stopped) => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                let generation = *changes.borrow_and_update();
                if generation > shared.announced.load(Ordering::SeqCst) {
                    shared.announce().await;
                }
            }
            _ = retry.tick() => {
                let unsynced = shared.directory.unsynced();
                if !unsynced.is_empty() {
                    shared.exchange_with(unsynced).await;
                }
            }
        }
    }
}

/// `SCHEME://IP:PORT` for a bound address; an unspecified IP is advertised as loopback.
fn advertised_url(scheme: &str, address: SocketAddr) -> String {
    let ip = match address.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".parse().unwrap(),
        ip if ip.is_unspecified() => "::1".parse().unwrap(),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, address.port()))
}

/// Distinguishes this start of the service from earlier ones.
fn incarnation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

#[async_trait]
impl Transport for MeshTransport {
    async fn request(&self, subject: &str, message: Message, timeout: Duration) -> Result<Message> {
        let _in_flight = self.gate.enter()?;
        if self.shared.local.has_subscribers(subject) {
            return self
                .shared
                .local
                .request(subject, message, timeout, Targets::All)
                .await;
        }
        self.request_remote(subject, message, timeout).await
    }

    async fn publish(&self, subject: &str, message: Message) -> Result<()> {
        self.publish_reaching(subject, message).await.map(|_| ())
    }

    /// `Nobody` when neither this service nor any peer it knows subscribes,
    /// or every peer it sent to had no subscriber any more.
    async fn publish_reaching(&self, subject: &str, message: Message) -> Result<Reach> {
        let _in_flight = self.gate.enter()?;
        let (_, local) = self.shared.local.subscriptions();
        let plan = self.shared.directory.plan_event(subject, &local);
        if plan.deliveries.is_empty() {
            return Ok(Reach::Nobody);
        }
        let (taken, failed) = self.fan_out(subject, message, plan).await;
        match (failed.is_empty(), taken.plain || !taken.groups.is_empty()) {
            (true, true) => Ok(Reach::Taken),
            (true, false) => Ok(Reach::Nobody),
            (false, _) => Err(Error::Undelivered {
                subject: subject.to_owned(),
                failed,
            }),
        }
    }

    /// The queue groups this service and the peers it knows subscribe with.
    fn live_groups(&self, subject: &str) -> Option<Vec<GroupAddress>> {
        let (_, local) = self.shared.local.subscriptions();
        let plan = self.shared.directory.plan_event(subject, &local);
        Some(Directory::groups_of(&plan))
    }

    /// Delivers only to the chosen recipients; a failed delivery leaves its
    /// groups out of the answer (the caller holds the event for them).
    async fn publish_to(
        &self,
        subject: &str,
        message: Message,
        plain: bool,
        groups: &[GroupAddress],
    ) -> Result<Recipients> {
        let _in_flight = self.gate.enter()?;
        let (_, local) = self.shared.local.subscriptions();
        let mut plan = self.shared.directory.plan_event(subject, &local);
        plan.restrict(plain, groups);
        if plan.deliveries.is_empty() {
            return Ok(Recipients::default());
        }
        let (taken, failed) = self.fan_out(subject, message, plan).await;
        for failure in &failed {
            tracing::debug!(%subject, peer = %failure.peer, reason = %failure.reason, "delivery to a chosen recipient failed");
        }
        Ok(taken)
    }

    async fn subscribe(&self, subject: &str, group: Option<&str>) -> Result<Subscription> {
        let _in_flight = self.gate.enter()?;
        let mut subscription = self.shared.subscribe(subject, group).await;
        let stop = subscription.take_stop();
        let settle = subscription.take_settle();
        let (subject, group) = (
            subscription.subject().to_owned(),
            subscription.group().map(str::to_owned),
        );
        let inline = subscription.inline_slot().cloned();
        let stream = KeepServing {
            subscription,
            _running: self.running.clone(),
        };
        let mut subscription = Subscription::new(subject, group, stream);
        if let Some(slot) = inline {
            subscription = subscription.with_inline_slot(slot);
        }
        if let Some(stop) = stop {
            subscription = subscription.with_stop(stop);
        }
        if let Some(settle) = settle {
            subscription = subscription.with_settle(settle);
        }
        Ok(subscription)
    }

    async fn close(&self) -> Result<()> {
        if self.gate.close().await {
            self.shared.local.remove_owner(self.shared.owner);
            // Peers forget this service instead of warning that it is unreachable.
            self.shared.leaving.store(true, Ordering::SeqCst);
            self.shared.announce().await;
            self.running.stop();
            let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(server) = server {
                // Graceful: in-flight requests finish, bounded by the server timeout.
                let bound = self.shared.settings.server_timeout + Duration::from_secs(1);
                if tokio::time::timeout(bound, server).await.is_err() {
                    tracing::warn!(
                        "{}: server did not finish in-flight requests in time",
                        self.shared.backend
                    );
                }
            }
        }
        Ok(())
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn health(&self) -> switchboard_core::health::Health {
        if self.gate.is_closed() {
            switchboard_core::health::Health::Closed
        } else {
            switchboard_core::health::Health::Connected
        }
    }

    fn local_address(&self) -> Option<SocketAddr> {
        Some(self.local_address)
    }

    fn describe_service(&self, service: &str, document: Option<bytes::Bytes>) {
        let mut documents = self
            .shared
            .documents
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match document {
            Some(document) => documents.insert(service.to_owned(), document),
            None => documents.remove(service),
        };
    }
}
