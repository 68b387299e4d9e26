//! The three-service shop gives the same business result on every backend CI
//! runs, in the synchronous style, the asynchronous style, and a per-route mix.

#[path = "../examples/shop/shop.rs"]
#[allow(dead_code)]
mod shop;
mod support;

use switchboard::Settings;

/// The three ways the shop is configured, each through the one settings
/// loader exactly as a deployment would: nothing set (every route sync),
/// `SWITCHBOARD_STYLE=async` (every route async), and `SWITCHBOARD_CONFIG`
/// naming `examples/shop/mixed.toml` (per-route styles).
fn styles() -> Vec<(&'static str, Option<(&'static str, String)>)> {
    let mixed = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shop/mixed.toml");
    vec![
        ("sync", None),
        ("async", Some(("SWITCHBOARD_STYLE", "async".to_owned()))),
        ("mixed", Some(("SWITCHBOARD_CONFIG", mixed.to_owned()))),
    ]
}

/// Runs the shop in every style with each service's URL from `url_for`
/// (given as `SWITCHBOARD_URL_<SERVICE>`).
async fn shop_on(backend: &str, url_for: impl Fn(&str) -> String) {
    for (name, variable) in styles() {
        let settings = |service: &str| {
            let url_variable = format!("SWITCHBOARD_URL_{}", service.to_ascii_uppercase());
            let url = url_for(service);
            Settings::load_with(service, |key| match &variable {
                Some((set, value)) if *set == key => Some(value.clone()),
                _ if key == url_variable => Some(url.clone()),
                _ => None,
            })
        };
        let report = shop::run(&shop::sample_orders(), settings)
            .await
            .unwrap_or_else(|err| panic!("shop on {backend} ({name}): {err}"));
        assert_eq!(
            report,
            shop::expected_report(),
            "shop on {backend} ({name})"
        );
        eprintln!("shop on {backend} ({name}): expected result");
    }
}

/// Skips (or, under CI, fails) when the server at `url` is unreachable.
#[cfg(any(feature = "nats", feature = "kafka"))]
async fn reachable(url: &str) -> bool {
    match support::connect_or_skip(url).await {
        Some(bus) => {
            bus.close().await.unwrap();
            true
        }
        None => false,
    }
}

async fn same_result_on_memory() {
    let name = support::unique("shop");
    shop_on("memory", |_| format!("memory://{name}")).await;
}

#[cfg(feature = "nats")]
async fn same_result_on_nats() {
    let url = support::nats_url();
    if reachable(&url).await {
        shop_on("nats", |_| url.clone()).await;
    }
}

#[cfg(feature = "kafka")]
async fn same_result_on_kafka() {
    let url = support::kafka_url();
    if reachable(&url).await {
        shop_on("kafka", |_| url.clone()).await;
    }
}

/// A mesh of one port per service; `orders` is the seed the others learn the mesh from.
#[cfg(feature = "http")]
async fn shop_on_mesh(scheme: &'static str) {
    let ports: Vec<u16> = (0..4).map(|_| support::free_port()).collect();
    let port_of = |service: &str| match service {
        "orders" => ports[0],
        "inventory" => ports[1],
        "payments" => ports[2],
        _ => ports[3],
    };
    shop_on(scheme, |service| match service {
        "orders" => format!("{scheme}://127.0.0.1:{}", port_of(service)),
        _ => format!(
            "{scheme}://127.0.0.1:{}?peers={scheme}://127.0.0.1:{}",
            port_of(service),
            ports[0]
        ),
    })
    .await;
}

#[cfg(feature = "http")]
async fn same_result_on_http() {
    shop_on_mesh("http").await;
}

#[cfg(feature = "grpc")]
async fn same_result_on_grpc() {
    shop_on_mesh("grpc").await;
}

crate::tests!(
    same_result_on_memory,
    #[cfg(feature = "nats")]
    same_result_on_nats,
    #[cfg(feature = "kafka")]
    same_result_on_kafka,
    #[cfg(feature = "http")]
    same_result_on_http,
    #[cfg(feature = "grpc")]
    same_result_on_grpc,
);
