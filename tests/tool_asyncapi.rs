//! Generated AsyncAPI 3.0 documents, validated by the AsyncAPI project's own
//! parser (`@asyncapi/parser` from npm, run with Node; installed by
//! `scripts/asyncapi-parser.sh`): the quickstart's and the shop's services
//! and settings in both styles, where flipping the style changes the
//! operations' replies and nothing else; a service's registered schemas
//! under `components`; and `switchboard asyncapi` for a settings file.

#[path = "../examples/quickstart/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;
#[path = "../examples/shop/shop.rs"]
#[allow(dead_code)]
mod shop;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use switchboard::{Service, Settings};

/// The settings a service loads in `style` (`sync` is the default), on its
/// own in-process hub.
fn settings(service: &str, style: &str) -> Settings {
    let hub = format!("memory://{}", support::unique("asyncapi"));
    Settings::load_with(service, |key| match key {
        "SWITCHBOARD_URL" => Some(hub.clone()),
        "SWITCHBOARD_STYLE" if style == "async" => Some("async".to_owned()),
        _ => None,
    })
    .unwrap()
}

/// Validates `documents` with the AsyncAPI parser; each is written to `dir`
/// under its name. Outside CI a missing Node or parser skips the test.
fn validate(dir: &Path, documents: &[(String, Value)]) {
    let parser = std::env::var("ASYNCAPI_PARSER_DIR")
        .unwrap_or_else(|_| "/var/cache/switchboard/asyncapi".to_owned());
    let installed = Path::new(&parser).join("node_modules/@asyncapi/parser");
    let node = Command::new("node").arg("--version").output();
    if !installed.is_dir() || node.is_err() {
        let why = format!(
            "the AsyncAPI parser is not installed in {parser} or node is missing (run scripts/asyncapi-parser.sh)"
        );
        if support::ci() {
            panic!("{why}, and CI=true");
        }
        support::skip(format!("{why}; with CI=true this fails"));
    }
    let files: Vec<PathBuf> = documents
        .iter()
        .map(|(name, document)| {
            let file = dir.join(format!("{name}.json"));
            std::fs::write(&file, serde_json::to_vec_pretty(document).unwrap()).unwrap();
            file
        })
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check-asyncapi.cjs");
    let output = Command::new("node")
        .arg(script)
        .args(&files)
        .env("ASYNCAPI_PARSER_DIR", &parser)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    eprint!("{report}");
    assert!(
        output.status.success(),
        "the AsyncAPI parser refused a document:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        report.matches("valid ").count(),
        documents.len(),
        "{report}"
    );
}

/// The operations' ids and whether each has a reply.
fn replies(document: &Value) -> Vec<(String, bool)> {
    document["operations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, operation)| (id.clone(), operation.get("reply").is_some()))
        .collect()
}

async fn quickstart_services(style: &str) -> Vec<Service> {
    let orders = settings("orders", style).connect().await.unwrap();
    let shipping = settings("shipping", style).connect().await.unwrap();
    let (shipped, _) = tokio::sync::mpsc::unbounded_channel();
    vec![
        quickstart::orders_service(orders),
        quickstart::shipping_service(shipping, shipped),
    ]
}

async fn shop_services(style: &str) -> Vec<Service> {
    vec![
        shop::orders_service(settings("orders", style).connect().await.unwrap()),
        shop::inventory_service(settings("inventory", style).connect().await.unwrap()),
        shop::payments_service(settings("payments", style).connect().await.unwrap()),
    ]
}

/// The quickstart's and the shop's documents validate in both styles; in
/// the sync style every handler's operation has a reply, in the async style
/// none has (each service's operations and channels are otherwise the same).
async fn quickstart_and_shop_documents_validate_in_both_styles() {
    let dir = tempfile::tempdir().unwrap();
    let mut documents = Vec::new();
    let mut by_style = Vec::new();
    for style in ["sync", "async"] {
        let quickstart = quickstart_services(style).await;
        let shop = shop_services(style).await;
        let services = quickstart
            .iter()
            .map(|service| ("quickstart", service))
            .chain(shop.iter().map(|service| ("shop", service)));
        let mut operations = Vec::new();
        for (example, service) in services {
            let document = service.asyncapi();
            let name = format!(
                "{example}-{style}-{}",
                document["info"]["title"].as_str().unwrap()
            );
            operations.extend(replies(&document));
            documents.push((name, document));
        }
        let settings_document = settings("client", style).asyncapi("client").unwrap();
        documents.push((format!("{style}-settings"), settings_document));
        by_style.push(operations);
    }
    validate(dir.path(), &documents);
    let (sync, asynchronous) = (&by_style[0], &by_style[1]);
    assert!(sync.iter().all(|(_, reply)| *reply), "{sync:?}");
    assert!(
        asynchronous.iter().all(|(_, reply)| !*reply),
        "{asynchronous:?}"
    );
    let ids = |operations: &[(String, bool)]| -> Vec<String> {
        operations.iter().map(|(id, _)| id.clone()).collect()
    };
    assert_eq!(
        ids(sync),
        ids(asynchronous),
        "the same operations in both styles"
    );
    assert!(ids(sync).contains(&"orders.place".to_owned()), "{sync:?}");
}

/// A mixed route table: a route flipped to async in the TOML loses its reply
/// in the document, and the other routes keep theirs.
async fn flipping_one_route_changes_only_its_operation() {
    let dir = tempfile::tempdir().unwrap();
    let toml = |style: &str| {
        format!(
            "[transports.default]\nurl = \"nats://127.0.0.1:4222\"\n\
             [[routes]]\nsubjects = \"orders.place\"\nstyle = \"{style}\"\n\
             [[routes]]\nsubjects = \"orders.report\"\nquery = true\n\
             [[routes]]\nsubjects = \"telemetry.>\"\nstyle = \"async\"\ncodec = \"msgpack\"\n"
        )
    };
    let sync = Settings::from_toml(&toml("sync"))
        .unwrap()
        .asyncapi("shop")
        .unwrap();
    let flipped = Settings::from_toml(&toml("async"))
        .unwrap()
        .asyncapi("shop")
        .unwrap();
    validate(
        dir.path(),
        &[
            ("sync".into(), sync.clone()),
            ("flipped".into(), flipped.clone()),
        ],
    );
    assert!(sync["operations"]["orders.place"]["reply"].is_object());
    assert!(flipped["operations"]["orders.place"].get("reply").is_none());
    assert_eq!(
        sync["operations"]["orders.report"],
        flipped["operations"]["orders.report"]
    );
    assert_eq!(
        sync["operations"]["telemetry._"],
        flipped["operations"]["telemetry._"]
    );
    assert_eq!(sync["servers"], flipped["servers"]);
    assert_eq!(sync["servers"]["default"]["host"], "127.0.0.1:4222");
    let telemetry = &sync["channels"]["telemetry._"]["messages"]["request"]["$ref"];
    assert!(
        telemetry.as_str().unwrap().ends_with(".msgpack"),
        "the route's codec names its message: {telemetry}"
    );
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Reserve {
    /// What to reserve.
    item: Item,
    quantity: u32,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Item {
    sku: String,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
struct Reserved {
    left: u32,
}

async fn reserve(request: Reserve) -> Result<Reserved, String> {
    Ok(Reserved {
        left: request.quantity,
    })
}

async fn audit(_: String) {}

/// Registered schemas are the payloads', with shared definitions under
/// `components.schemas` (the parser resolves their references); a type with
/// no schema is said to have none.
async fn a_service_document_carries_the_schemas_it_registered() {
    let dir = tempfile::tempdir().unwrap();
    let bus = settings("inventory", "sync").connect().await.unwrap();
    let service = Service::new("inventory", bus)
        .schema::<Reserve>()
        .schema::<Reserved>()
        .on("inventory.reserve", reserve)
        .on("inventory.audit", audit);
    let document = service.asyncapi();
    validate(dir.path(), &[("inventory".into(), document.clone())]);
    let messages = &document["components"]["messages"];
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        messages["Reserve.json"]["payload"]["$ref"],
        "#/components/schemas/Reserve"
    );
    let reserve = &schemas["Reserve"];
    assert_eq!(reserve["type"], "object", "{reserve}");
    assert!(
        reserve["properties"]["item"]
            .to_string()
            .contains("#/components/schemas/Item"),
        "{reserve}"
    );
    assert_eq!(schemas["Item"]["type"], "object");
    assert_eq!(
        messages["Reserved.json"]["payload"]["$ref"],
        "#/components/schemas/Reserved"
    );
    let unknown = messages["String.json"]["summary"].as_str().unwrap();
    assert!(unknown.contains("No schema"), "{unknown}");
}

/// `switchboard asyncapi` prints the settings file's document without
/// contacting any backend (the URL points where nothing listens).
async fn the_cli_prints_a_settings_files_document() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shop.toml");
    std::fs::write(
        &config,
        "[transports.default]\nurl = \"kafka://127.0.0.1:1\"\n[[routes]]\nsubjects = \"orders.*\"\nstyle = \"async\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["asyncapi", "--title", "shop"])
        .env("SWITCHBOARD_CONFIG", &config)
        .env_remove("SWITCHBOARD_URL")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["info"]["title"], "shop");
    assert_eq!(document["servers"]["default"]["protocol"], "kafka");
    assert_eq!(document["channels"]["orders._"]["address"], "orders.*");
    validate(dir.path(), &[("cli".into(), document)]);
}

/// An HTTP service serves the documents of the services running on it at
/// `GET /_switchboard/asyncapi/SERVICE` (and their names at `GET /_switchboard/asyncapi`), behind the
/// same bearer token as every other path; a stopped service's is gone.
async fn an_http_service_serves_its_document() {
    let bus = switchboard::connect("http://127.0.0.1:0?token=s3cret")
        .await
        .unwrap();
    let address = bus.local_address().unwrap();
    let service = Service::new("inventory", bus.clone()).on("inventory.reserve", reserve);
    let expected = service.asyncapi();
    let running = service.start().await.unwrap();
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = http.get(format!("http://{address}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let listed = get("/_switchboard/asyncapi", Some("s3cret")).await.unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(listed.json::<Vec<String>>().await.unwrap(), ["inventory"]);
    let served = get("/_switchboard/asyncapi/inventory", Some("s3cret"))
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let served: Value = served.json().await.unwrap();
    assert_eq!(served, expected);
    let dir = tempfile::tempdir().unwrap();
    validate(dir.path(), &[("served".into(), served)]);
    let stranger = get("/_switchboard/asyncapi/inventory", None).await.unwrap();
    assert_eq!(stranger.status(), 401, "no document without the token");
    let other = get("/_switchboard/asyncapi/payments", Some("s3cret"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    running.shutdown().await;
    let gone = get("/_switchboard/asyncapi/inventory", Some("s3cret"))
        .await
        .unwrap();
    assert_eq!(gone.status(), 404, "a stopped service's document is gone");
    bus.close().await.unwrap();
}

/// A gRPC service answers `Switchboard/Describe` with the document of a
/// service running on it (and their names for an empty `service`), behind the
/// bearer token; a stopped service's is gone.
async fn a_grpc_service_serves_its_document() {
    use switchboard::grpc::proto::switchboard_client::SwitchboardClient;
    use switchboard::grpc::proto::DescribeRequest;

    let bus = switchboard::connect("grpc://127.0.0.1:0?token=s3cret")
        .await
        .unwrap();
    let address = bus.local_address().unwrap();
    let service = Service::new("inventory", bus.clone()).on("inventory.reserve", reserve);
    let expected = service.asyncapi();
    let running = service.start().await.unwrap();
    let mut client = SwitchboardClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let describe = |service: &str, token: Option<&str>| {
        let mut request = tonic::Request::new(DescribeRequest {
            service: service.to_owned(),
        });
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    };
    let listed = client
        .describe(describe("", Some("s3cret")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.services, ["inventory"]);
    assert!(listed.asyncapi.is_empty());
    let served = client
        .describe(describe("inventory", Some("s3cret")))
        .await
        .unwrap()
        .into_inner();
    let served: Value = serde_json::from_slice(&served.asyncapi).unwrap();
    assert_eq!(served, expected);
    let dir = tempfile::tempdir().unwrap();
    validate(dir.path(), &[("served".into(), served)]);
    let stranger = client
        .describe(describe("inventory", None))
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), tonic::Code::Unauthenticated);
    let other = client
        .describe(describe("payments", Some("s3cret")))
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::NotFound);
    running.shutdown().await;
    let gone = client
        .describe(describe("inventory", Some("s3cret")))
        .await
        .unwrap_err();
    assert_eq!(
        gone.code(),
        tonic::Code::NotFound,
        "a stopped service's document is gone"
    );
    bus.close().await.unwrap();
}

crate::tests!(
    an_http_service_serves_its_document,
    a_grpc_service_serves_its_document,
    quickstart_and_shop_documents_validate_in_both_styles,
    flipping_one_route_changes_only_its_operation,
    a_service_document_carries_the_schemas_it_registered,
    the_cli_prints_a_settings_files_document,
);
