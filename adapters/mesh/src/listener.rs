//! The accept loop: at most `max_connections` connections, each bound by the
//! header timeout (also while idle between requests), optionally over TLS, and
//! a graceful stop that lets in-flight requests finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use futures_util::future::Either;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower_service::Service as _;

use super::app::App;

/// The HTTP version a server speaks: HTTP/1.1 (`http://`) or HTTP/2 only (gRPC, prior knowledge or ALPN `h2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (`http://`, `https://`).
    Http1,
    /// HTTP/2 only (gRPC).
    Http2,
}

/// What bounds the server's connections (documented in `docs.md`).
#[derive(Clone)]
pub(super) struct ConnectionLimits {
    /// Longest wait for a request's complete headers, and for the next request
    /// on an idle keep-alive connection (hyper's header read timeout).
    pub header_timeout: Duration,
    /// Connections served at once; the next is accepted when one closes.
    pub max_connections: usize,
    /// Largest buffered request head, in bytes.
    pub max_header_bytes: usize,
}

/// Serves `app` on `listener` until `stopped` turns true, then waits (the caller
/// bounds how long) for open requests to finish; a request to a path
/// `needs_caller_address` says yes to carries the caller's address.
pub(super) async fn serve(
    listener: TcpListener,
    (app, needs_caller_address): (App, fn(&str) -> bool),
    protocol: Protocol,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    mut stopped: watch::Receiver<bool>,
) {
    let http = Http::new(protocol, &limits);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = switchboard_core::drain::stop_requested(&mut stopped) => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors, or a connection reset before accept:
                    // pause briefly rather than spin, and keep serving.
                    tracing::warn!(error = %err, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = switchboard_core::drain::stop_requested(&mut stopped) => break,
        };
        let _ = stream.set_nodelay(true);

        if protocol == Protocol::Http2 {
            keep_alive(&stream, limits.header_timeout);
        }
        let connection = Connection {
            http: http.clone(),
            app: app.clone(),
            remote,
            needs_caller_address,
            watcher: graceful.watcher(),
            first_request_within: limits.header_timeout,
        };
        let tls = tls.clone();
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            match tls {
                None => connection.serve(stream).await,
                Some(acceptor) => {
                    // The TLS handshake is bound like the headers that follow it.
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(err)) => {
                            tracing::debug!(%remote, error = %err, "http: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%remote, "http: TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// TCP keep-alive probes after `idle`, every `idle`: an HTTP/2 connection
/// whose peer vanished is closed by the kernel (after 3 unanswered probes).
fn keep_alive(stream: &tokio::net::TcpStream, idle: Duration) {
    let probes = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(idle)
        .with_retries(3);
    if let Err(err) = socket2::SockRef::from(stream).set_tcp_keepalive(&probes) {
        tracing::debug!(error = %err, "TCP keep-alive not set");
    }
}

/// How connections are served: HTTP/1.1 or HTTP/2, with the limits.
#[derive(Clone)]
enum Http {
    One(hyper::server::conn::http1::Builder),

    Two(hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor>),
}

impl Http {
    fn new(protocol: Protocol, limits: &ConnectionLimits) -> Self {
        match protocol {
            Protocol::Http1 => {
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .max_buf_size(limits.max_header_bytes.max(8192));
                Http::One(http)
            }

            Protocol::Http2 => {
                let mut http =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                // No HTTP/2 pings (their bookkeeping runs on every poll of the
                // connection): a vanished peer is found by TCP keep-alive instead.
                http.timer(TokioTimer::new())
                    .max_header_list_size(limits.max_header_bytes as u32)
                    .max_concurrent_streams(1024);
                Http::Two(http)
            }
        }
    }
}

/// One accepted connection, before its first byte is read.
struct Connection {
    http: Http,
    app: App,
    remote: SocketAddr,
    needs_caller_address: fn(&str) -> bool,
    watcher: hyper_util::server::graceful::Watcher,
    /// HTTP/2: how long a connection may go without its first request.
    first_request_within: Duration,
}

impl Connection {
    async fn serve<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            http,
            app,
            remote,
            needs_caller_address,
            watcher,
            first_request_within,
        } = self;
        let requested = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = requested.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            seen.store(true, std::sync::atomic::Ordering::Relaxed);
            // The peer's address, for the snapshot exchange's address check.
            if needs_caller_address(request.uri().path()) {
                request.extensions_mut().insert(ConnectInfo(remote));
            }
            match &app {
                App::Routes(routes) => Either::Left(routes.clone().call(request)),
                App::Direct(direct) => {
                    Either::Right(direct(request.map(axum::body::Body::new)).map(Ok))
                }
            }
        });
        let ended = match http {
            Http::One(http) => {
                watcher
                    .watch(http.serve_connection(TokioIo::new(stream), service))
                    .await
            }

            Http::Two(http) => {
                // hyper's HTTP/2 server has no header timeout: a connection that
                // sends nothing (or only the preface) would hold its slot for
                // ever, so one without a request in time is dropped (closed).
                let serving = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::pin!(serving);
                tokio::select! {
                    ended = &mut serving => ended,
                    () = tokio::time::sleep(first_request_within) => {
                        if !requested.load(std::sync::atomic::Ordering::Relaxed) {
                            tracing::debug!(%remote, "no request within header_timeout; connection closed");
                            return;
                        }
                        serving.await
                    }
                }
            }
        };
        if let Err(err) = ended {
            tracing::debug!(%remote, error = %err, "connection ended with an error");
        }
    }
}
