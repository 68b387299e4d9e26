//! Raw reqwest → axum doing what a typed HTTP round trip does, for the
//! allocation test and the instruction counter: the client with the
//! settings switchboard's peer client uses, and a server that decodes the
//! order and encodes it back, as a typed route does.

use axum::routing::post;
use axum::Json;

use super::typed_paths::Order;

/// An axum server on 127.0.0.1 whose `/echo` decodes an order and answers
/// with it: the URL of `/echo`, and the server's task.
pub async fn echo_server() -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/echo",
        post(|Json(order): Json<Order>| async move { Json(order) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!("http://{}/echo", listener.local_addr().expect("bound"));
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("the echo server runs");
    });
    (url, server)
}

/// A reqwest client with the settings switchboard's peer client uses.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(64)
        .build()
        .expect("a reqwest client")
}

/// One round trip: `order` encoded, posted to `url`, the answer decoded.
pub async fn echo(client: &reqwest::Client, url: &str, order: &Order) -> reqwest::Result<Order> {
    client.post(url).json(order).send().await?.json().await
}
