//! The quickstart gives the same outcome on every backend CI runs, flipped by
//! `SWITCHBOARD_STYLE` and moved by a settings file, through the one loader.

#[path = "../examples/quickstart/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;
mod support;

use quickstart::Refusal;
use switchboard::{Settings, Style};

/// Runs the quickstart with `env` as its whole environment and checks the
/// outcome the configured style promises.
async fn check(backend: &str, env: &[(String, String)], style: Style) {
    let settings = |service: &str| {
        Settings::load_with(service, |key| {
            env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        })
    };
    let outcome = quickstart::run(settings)
        .await
        .unwrap_or_else(|err| panic!("quickstart on {backend} ({style}): {err}"));
    assert_eq!(outcome.backend, backend, "{outcome:?}");
    assert_eq!(outcome.style, style, "{outcome:?}");
    assert_eq!(outcome.shipped, 1001, "{outcome:?}");
    match style {
        Style::Sync => {
            assert_eq!(outcome.receipt, Some(1001), "{outcome:?}");
            assert_eq!(
                outcome.refusal,
                Refusal::Error {
                    code: Some("invalid_quantity".into()),
                    message: "quantity must be at least 1".into()
                }
            );
        }
        Style::Async => {
            assert_eq!(outcome.receipt, None, "{outcome:?}");
            assert_eq!(
                outcome.refusal,
                Refusal::DeadLettered {
                    attempts: 3,
                    reason: "quantity must be at least 1".into()
                }
            );
        }
    }
}

/// Every way to configure the quickstart on one backend: nothing but the URL
/// (sync), `SWITCHBOARD_STYLE=async`, and a TOML file that sets the URL and
/// flips `orders.place` to async by a route.
async fn every_style(backend: &str, urls: &[(&str, String)]) {
    let url_vars: Vec<(String, String)> = urls
        .iter()
        .map(|(service, url)| {
            (
                format!("SWITCHBOARD_URL_{}", service.to_ascii_uppercase()),
                url.clone(),
            )
        })
        .collect();
    check(backend, &url_vars, Style::Sync).await;

    let mut flipped = url_vars.clone();
    flipped.push(("SWITCHBOARD_STYLE".into(), "async".into()));
    check(backend, &flipped, Style::Async).await;

    // The file alone moves every service (the URL variables are not set) when
    // they share one URL; HTTP services need one port each, so there the
    // file carries only the route and the variables the ports.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    let shared = urls.iter().all(|(_, url)| *url == urls[0].1);
    let mut text = String::new();
    if shared {
        text.push_str(&format!(
            "[transports.default]\nurl = \"{}\"\n\n",
            urls[0].1
        ));
    }
    text.push_str("[[routes]]\nsubjects = \"orders.place\"\nstyle = \"async\"\n");
    std::fs::write(&file, text).unwrap();
    let mut from_file = vec![("SWITCHBOARD_CONFIG".to_owned(), file.display().to_string())];
    if !shared {
        from_file.extend(url_vars);
    }
    check(backend, &from_file, Style::Async).await;
}

fn same_url(url: &str) -> Vec<(&'static str, String)> {
    ["orders", "shipping", "client"]
        .into_iter()
        .map(|service| (service, url.to_owned()))
        .collect()
}

async fn on_memory() {
    every_style(
        "memory",
        &same_url(&format!("memory://{}", support::unique("qs"))),
    )
    .await;
}

/// One port per service, `orders` the seed the others learn the mesh from.
#[cfg(feature = "http")]
async fn on_mesh(scheme: &str) {
    let orders = support::free_port();
    let seed = format!("{scheme}://127.0.0.1:{orders}");
    let urls = vec![
        ("orders", seed.clone()),
        ("shipping", format!("{scheme}://127.0.0.1:0?peers={seed}")),
        ("client", format!("{scheme}://127.0.0.1:0?peers={seed}")),
    ];
    every_style(scheme, &urls).await;
}

#[cfg(feature = "http")]
async fn on_http() {
    on_mesh("http").await;
}

#[cfg(feature = "grpc")]
async fn on_grpc() {
    on_mesh("grpc").await;
}

#[cfg(feature = "nats")]
async fn on_nats() {
    let url = support::nats_url();
    let probe = support::connect_or_skip(&url).await.unwrap();
    probe.close().await.unwrap();
    every_style("nats", &same_url(&url)).await;
}

#[cfg(feature = "kafka")]
async fn on_kafka() {
    let url = support::kafka_url();
    let probe = support::connect_or_skip(&url).await.unwrap();
    probe.close().await.unwrap();
    every_style("kafka", &same_url(&url)).await;
}

crate::tests!(
    on_memory,
    #[cfg(feature = "http")]
    on_http,
    #[cfg(feature = "grpc")]
    on_grpc,
    #[cfg(feature = "nats")]
    on_nats,
    #[cfg(feature = "kafka")]
    on_kafka,
);
