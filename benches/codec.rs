//! The typed path per codec: what a route's `codec` costs against JSON.
//!
//! `cargo bench --all-features --bench codec`. `codec/encode_decode` encodes
//! and decodes one order (about 128 bytes as JSON) with each codec alone;
//! `codec/typed_request_memory` times `Bus::send` on a sync route whose
//! `codec` is the row's, to a typed `Service` handler that decodes the order
//! and replies in the same encoding, one call at a time on the in-memory
//! backend (where the codec is most of what differs). The `protobuf` rows
//! carry the same order as prost messages in `Proto<M>`.

mod common;

use std::collections::BTreeMap;

use common::{config, runtime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use switchboard::codec::Encoding;
use switchboard::settings::{RouteRule, RouteTable, Style, DEFAULT_TRANSPORT};
use switchboard::{Bus, Message, Proto, Sent, Service};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    items: Vec<(String, u32)>,
    total_cents: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Receipt {
    id: u64,
    accepted: bool,
}

fn order() -> Order {
    Order {
        id: 1001,
        customer: "ada@example.org".into(),
        items: vec![("tea".into(), 2), ("cake".into(), 1)],
        total_cents: 1250,
    }
}

const ENCODINGS: [Encoding; 3] = [Encoding::Json, Encoding::MsgPack, Encoding::Cbor];

/// The order and receipt as prost generates them.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Item {
        #[prost(string, tag = "1")]
        pub sku: String,
        #[prost(uint32, tag = "2")]
        pub quantity: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Order {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(string, tag = "2")]
        pub customer: String,
        #[prost(message, repeated, tag = "3")]
        pub items: Vec<Item>,
        #[prost(uint64, tag = "4")]
        pub total_cents: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Receipt {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(bool, tag = "2")]
        pub accepted: bool,
    }

    pub fn order() -> Order {
        let super::Order {
            id,
            customer,
            items,
            total_cents,
        } = super::order();
        Order {
            id,
            customer,
            items: items
                .into_iter()
                .map(|(sku, quantity)| Item { sku, quantity })
                .collect(),
            total_cents,
        }
    }
}

fn encode_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec/encode_decode");
    group.throughput(Throughput::Elements(1));
    let order = order();
    for encoding in ENCODINGS {
        let size = encoding.encode(&order).unwrap().len();
        group.bench_function(BenchmarkId::new(encoding.to_string(), size), |b| {
            b.iter(|| {
                let message = Message::encode_as(encoding, &order).unwrap();
                message.decode_typed::<Order>().unwrap()
            })
        });
    }
    let order = Proto(proto::order());
    let size = order.encode().len();
    group.bench_function(BenchmarkId::new("protobuf", size), |b| {
        b.iter(|| {
            let message = order.to_message();
            <Proto<proto::Order> as switchboard::FromPayload>::from_payload(
                message.encoding(),
                &message.payload,
            )
            .unwrap()
        })
    });
    group.finish();
}

async fn place_proto(Proto(order): Proto<proto::Order>) -> Proto<proto::Receipt> {
    Proto(proto::Receipt {
        id: order.id,
        accepted: order.total_cents > 0,
    })
}

async fn place(order: Order) -> Result<Receipt, String> {
    Ok(Receipt {
        id: order.id,
        accepted: order.total_cents > 0,
    })
}

fn typed_request(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("codec/typed_request_memory");
    group.throughput(Throughput::Elements(1));
    for encoding in ENCODINGS {
        let hub = format!("memory://bench-codec-{encoding}");
        let (bus, running) = rt.block_on(async {
            let server = switchboard::connect(&hub).await.unwrap();
            let running = Service::new("orders", server)
                .on("orders.place", place)
                .start()
                .await
                .unwrap();
            let mut table = RouteTable::new(Style::Sync);
            table
                .push(RouteRule {
                    codec: encoding,
                    ..RouteRule::new("orders.place")
                })
                .unwrap();
            let client = switchboard::connect(&hub).await.unwrap();
            let bus = Bus::from_routes(
                table,
                BTreeMap::from([(DEFAULT_TRANSPORT.to_owned(), client)]),
            )
            .unwrap();
            (bus, running)
        });
        let order = order();
        group.bench_function(BenchmarkId::new(encoding.to_string(), "serial"), |b| {
            b.to_async(&rt).iter(|| async {
                match bus
                    .send::<_, Receipt>("orders.place", &order)
                    .await
                    .unwrap()
                {
                    Sent::Replied(receipt) => assert!(receipt.accepted),
                    other => panic!("a sync route gave {other:?}"),
                }
            })
        });
        rt.block_on(running.shutdown());
    }
    let hub = "memory://bench-codec-protobuf";
    let (bus, running) = rt.block_on(async {
        let server = switchboard::connect(hub).await.unwrap();
        let running = Service::new("orders", server)
            .on("orders.place", place_proto)
            .start()
            .await
            .unwrap();
        (switchboard::connect(hub).await.unwrap(), running)
    });
    let order = Proto(proto::order());
    group.bench_function(BenchmarkId::new("protobuf", "serial"), |b| {
        b.to_async(&rt).iter(|| async {
            match bus
                .send::<_, Proto<proto::Receipt>>("orders.place", &order)
                .await
                .unwrap()
            {
                Sent::Replied(Proto(receipt)) => assert!(receipt.accepted),
                other => panic!("a sync route gave {other:?}"),
            }
        })
    });
    rt.block_on(running.shutdown());
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = encode_decode, typed_request
}
criterion_main!(benches);
