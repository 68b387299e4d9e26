//! What a GraphQL gateway in front costs: the same typed service called with
//! plain HTTP request/reply, and through the gateway, in one run.
//!
//! `cargo bench --all-features --bench graphql`. Everything listens on
//! 127.0.0.1 ephemeral ports; one 128-byte order per call, one call at a time.
//! Rows of `graphql/query_serial`:
//! - `service_typed_json`: `request_json` over the HTTP backend to a typed
//!   `Service` (the plain HTTP request/reply the gateway is compared with);
//! - `graphql_gateway_http`: a GraphQL query POSTed to the gateway, whose bus
//!   calls the same service over the HTTP backend (one hop more);
//! - `graphql_gateway_in_process`: the gateway and the service in one
//!   process (`memory://`): the GraphQL hop alone.

mod common;

use common::service_path::{self, Order, TypedService};
use common::{config, runtime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use switchboard::graphql::Gateway;
use switchboard::{Bus, Settings};

/// Serves a gateway over `bus` exposing `subject` as the query `echo`'s field; returns its URL.
async fn gateway(bus: Bus, subject: &str) -> (String, String) {
    let settings = Settings::from_toml(&format!(
        "[[routes]]\nsubjects = \"{subject}\"\ngraphql = \"query\"\n"
    ))
    .unwrap();
    let gateway = Gateway::new(bus, &settings).unwrap();
    let field = gateway.fields()[0].name.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    let app = gateway.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, field)
}

/// One GraphQL query carrying `order`, checked like a client would.
async fn query(client: reqwest::Client, url: String, body: serde_json::Value, field: String) {
    let answer: serde_json::Value = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer["data"][&field]["id"] == 42, "{answer}");
}

fn graphql(c: &mut Criterion) {
    let rt = runtime();
    let (responder, requester) = rt.block_on(common::http_pair());
    let typed = rt.block_on(TypedService::start(&responder, "bench.gql"));
    let in_process = rt
        .block_on(switchboard::connect("memory://bench-graphql"))
        .unwrap();
    let local = rt.block_on(TypedService::start(&in_process, "bench.gqllocal"));
    let (over_http, http_field) = rt.block_on(gateway(requester.clone(), &typed.echo));
    let (local_url, local_field) = rt.block_on(gateway(in_process.clone(), &local.echo));
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let order = serde_json::to_value(Order::of_size(128)).unwrap();
    let body = |field: &str| {
        json!({ "query": format!("query Echo($order: JSON) {{ {field}(input: $order) }}"),
                "variables": { "order": order } })
    };
    // The HTTP peer learns the service's subscription by gossip: wait until it answers.
    rt.block_on(async {
        while requester
            .request_json::<_, Order>(&typed.echo, &Order::of_size(128))
            .await
            .is_err()
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });

    let mut group = c.benchmark_group("graphql/query_serial");
    group.throughput(Throughput::Elements(1));
    service_path::bench_serial(&mut group, &rt, &requester, &typed.echo, 128);
    for (row, url, field) in [
        ("graphql_gateway_http", &over_http, &http_field),
        ("graphql_gateway_in_process", &local_url, &local_field),
    ] {
        let body = body(field);
        group.bench_function(BenchmarkId::new(row, 128), |b| {
            b.to_async(&rt)
                .iter(|| query(client.clone(), url.clone(), body.clone(), field.clone()))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = graphql
}
criterion_main!(benches);
