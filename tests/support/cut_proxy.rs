//! A TCP relay on loopback whose connections a test can cut, to drop a
//! client's connection to a server without stopping the server; and the
//! check that an acknowledgement lost that way reaches the shutdown report.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard::{Bus, Service};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// Relays every connection made to [`CutProxy::addr`] to the target.
pub struct CutProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    target: SocketAddr,
    relays: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// The task taking connections, while the port is open.
    accepting: Mutex<Option<JoinHandle<()>>>,
}

impl CutProxy {
    /// Starts relaying to `target` (a loopback address).
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = CutProxy {
            addr: listener.local_addr().unwrap(),
            target,
            relays: Arc::default(),
            accepting: Mutex::new(None),
        };
        proxy.accept(listener);
        proxy
    }

    fn accept(&self, listener: TcpListener) {
        let (target, opened) = (self.target, self.relays.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                opened.lock().unwrap().push(relay);
            }
        });
        *self.accepting.lock().unwrap() = Some(accepting);
    }

    /// Closes every connection relayed so far (both ends); new ones are
    /// relayed as before.
    pub fn cut(&self) {
        for relay in self.relays.lock().unwrap().drain(..) {
            relay.abort();
        }
    }

    /// Closes every connection relayed so far, and the port itself: to its
    /// clients, the server is down from now on.
    pub fn cut_and_refuse(&self) {
        if let Some(accepting) = self.accepting.lock().unwrap().take() {
            accepting.abort();
        }
        self.cut();
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        if let Some(accepting) = self.accepting.lock().unwrap().take() {
            accepting.abort();
        }
        self.cut();
    }
}

/// A service on `through` (connected via `proxy`) takes an event published
/// on `direct`; while its handler runs, the proxy cuts the connection and
/// closes its port, so the event's acknowledgement cannot be written. The
/// service's shutdown report must count one unacknowledged event, lose
/// none, and not be clean; the same service started on `direct` must then
/// get the event again (the backend redelivers it).
pub async fn lost_ack_is_reported(
    direct: &Bus,
    through: &Bus,
    proxy: &CutProxy,
    subject: &str,
    within: Duration,
) {
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<u32>();
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let first = Arc::new(AtomicBool::new(true));
    let service = |bus: &Bus| {
        let (seen_tx, entered, release, first) = (
            seen_tx.clone(),
            entered.clone(),
            release.clone(),
            first.clone(),
        );
        Service::new(format!("{subject}-svc"), bus.clone())
            .on(subject, move |n: u32| {
                let (seen, entered, release) = (seen_tx.clone(), entered.clone(), release.clone());
                let first = first.swap(false, Ordering::SeqCst);
                async move {
                    if first {
                        entered.notify_one();
                        release.notified().await;
                    }
                    let _ = seen.send(n);
                }
            })
            .start()
    };
    let running = service(through).await.unwrap();
    direct.publish_json(subject, &7u32).await.unwrap();
    tokio::time::timeout(within, entered.notified())
        .await
        .expect("the handler did not get the event");
    proxy.cut_and_refuse();
    // The acknowledgement must not slip out before the client has seen its
    // connection go (lapin could still write it into the closed socket):
    // its health says so, or a publish through it fails; at most 2 s, its
    // socket being closed and its port refused either way.
    let (prober, probe) = (through.clone(), format!("{subject}.probe"));
    let probing = tokio::spawn(async move {
        while prober
            .publish(&probe, switchboard::Message::new("probe"))
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let patience = std::time::Instant::now() + Duration::from_secs(2);
    while through.health() == switchboard::transport::Health::Connected
        && !probing.is_finished()
        && std::time::Instant::now() < patience
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    probing.abort();
    release.notify_one();
    let handled = tokio::time::timeout(within, seen.recv()).await;
    assert_eq!(handled.ok().flatten(), Some(7));
    let report = running.shutdown().await;
    assert_eq!(report.unacknowledged, 1, "{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert!(!report.is_clean(), "{report}");
    let restarted = service(direct).await.unwrap();
    let again = tokio::time::timeout(within, seen.recv()).await;
    assert_eq!(
        again.ok().flatten(),
        Some(7),
        "the event whose acknowledgement was lost did not come again"
    );
    let report = restarted.shutdown().await;
    assert!(report.is_clean(), "{report}");
}
