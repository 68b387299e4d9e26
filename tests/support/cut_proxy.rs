//! A TCP relay on loopback whose connections a test can cut, to drop a
//! client's connection to a server without stopping the server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Relays every connection made to [`CutProxy::addr`] to the target.
pub struct CutProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    relays: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepting: JoinHandle<()>,
}

impl CutProxy {
    /// Starts relaying to `target` (a loopback address).
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let relays: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let opened = relays.clone();
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
        CutProxy {
            addr,
            relays,
            accepting,
        }
    }

    /// Closes every connection relayed so far (both ends); new ones are
    /// relayed as before.
    pub fn cut(&self) {
        for relay in self.relays.lock().unwrap().drain(..) {
            relay.abort();
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut();
    }
}
