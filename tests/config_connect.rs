//! Backend selection by URL: what `connect` accepts and how it refuses.

use std::time::Duration;

use switchboard::settings::TransportSettings;
use switchboard::{connect, ErrorKind};

#[tokio::test]
async fn memory_url_connects() {
    let bus = connect("memory://").await.unwrap();
    assert_eq!(bus.backend(), "memory");
    assert_eq!(
        bus.default_timeout(),
        switchboard::settings::DEFAULT_REQUEST_TIMEOUT
    );
    let named = connect("memory://orders?buffer=4&request_timeout=250ms")
        .await
        .unwrap();
    assert_eq!(named.default_timeout(), Duration::from_millis(250));
}

#[tokio::test]
async fn unknown_scheme_lists_known_ones() {
    let err = connect("bogus://x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    let text = err.to_string();
    for scheme in ["memory://", "http://", "nats://", "kafka://"] {
        assert!(text.contains(scheme), "{text}");
    }
    assert!(text.contains("memory:// (enabled)"), "{text}");
}

#[cfg(not(feature = "nats"))]
#[tokio::test]
async fn nats_without_its_feature_names_the_feature() {
    let err = connect("nats://127.0.0.1:4222").await.unwrap_err();
    assert!(
        matches!(
            err,
            switchboard::Error::FeatureDisabled {
                feature: "nats",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("`nats` feature"), "{err}");
}

#[tokio::test]
async fn malformed_urls_and_options_are_config_errors() {
    for (url, expected) in [
        ("", "malformed URL"),
        ("no scheme here", "malformed URL"),
        ("memory://?bufer=3", "unknown option `bufer`"),
        ("memory://?buffer=0", "`buffer` must be at least 1"),
        ("memory://?buffer=many", "option `buffer`"),
        ("memory://?request_timeout=soon", "option `request_timeout`"),
        ("memory://?request_timeout=0s", "greater than zero"),
        ("memory://name:9/path", "memory URL"),
        ("memory://user:secret@hub", "memory URL"),
        ("memory://?buffer=1&buffer=2", "more than once"),
    ] {
        let err = connect(url).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{url}: {err}");
        assert!(err.to_string().contains(expected), "{url}: {err}");
        assert!(
            !err.to_string().contains("secret"),
            "password leaked: {err}"
        );
    }
}

#[tokio::test]
async fn named_memory_hubs_are_isolated() {
    let a = connect("memory://hub-a").await.unwrap();
    let b = connect("memory://hub-b").await.unwrap();
    let _sub = a.subscribe("shared.subject").await.unwrap();
    let err = b.request("shared.subject", "x".into()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders);
}

#[tokio::test]
async fn config_connects_with_options() {
    let config: TransportSettings = serde_json::from_str(
        r#"{ "url": "memory://configured", "request_timeout": "750ms", "options": { "buffer": "8" } }"#,
    )
    .unwrap();
    let bus = config.connect().await.unwrap();
    assert_eq!(bus.default_timeout(), Duration::from_millis(750));
    let mut bad = config.clone();
    bad.options.insert("colour".into(), "blue".into());
    let err = bad.connect().await.unwrap_err();
    assert!(err.to_string().contains("unknown option `colour`"), "{err}");
}

/// An `Error` returned from `main` prints its `Debug`: a refused connection
/// must read as a sentence naming the URL, not as a struct dump.
#[cfg(feature = "nats")]
#[tokio::test]
async fn a_refused_connection_reads_as_a_sentence() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = connect(&format!("nats://127.0.0.1:{port}?connect_timeout=1s"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    let printed = format!("{err:?}");
    eprintln!("{printed}");
    assert!(
        printed.starts_with(&format!("cannot connect to nats://127.0.0.1:{port}")),
        "{printed}"
    );
    assert!(
        !printed.contains("Connect {") && !printed.contains("source:"),
        "{printed}"
    );
}

#[tokio::test]
async fn a_misspelt_option_gets_a_suggestion() {
    let err = connect("memory://?request_timout=1s").await.unwrap_err();
    let printed = format!("{err:?}");
    assert!(
        printed.contains("did you mean `request_timeout`?"),
        "{printed}"
    );
}
