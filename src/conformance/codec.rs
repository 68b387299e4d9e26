//! Conformance cases for codecs beyond JSON (features `msgpack`, `cbor`,
//! `protobuf`): a
//! route's `codec` decides how `send` encodes, `content-type` carries it
//! across the backend, a typed handler decodes what it got and replies in
//! the same encoding, and garbage in that encoding is a coded error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::fixture::Fixture;
use super::support::{ensure, expect_kind, unique_subject, CaseResult, Failure, RECEIVE_WITHIN};
use crate::bus::{Bus, Sent};
use crate::codec::Encoding;
use crate::error::ErrorKind;
use crate::handler::State;
use crate::message::Message;
use crate::service::Service;
use crate::settings::{RouteRule, RouteTable, Style, DEFAULT_TRANSPORT};
use crate::wire;

#[derive(Debug, Serialize, Deserialize, PartialEq, Clone)]
struct Quote {
    sku: String,
    quantity: u32,
    /// Binary codecs carry bytes and floats as themselves.
    weights: Vec<f64>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Priced {
    sku: String,
    cents: u64,
}

type Seen = tokio::sync::mpsc::UnboundedSender<Quote>;

async fn price(quote: Quote) -> Result<Priced, String> {
    Ok(Priced {
        cents: u64::from(quote.quantity) * 250,
        sku: quote.sku,
    })
}

async fn record(quote: Quote, State(seen): State<Seen>) -> Result<(), String> {
    seen.send(quote).map_err(|e| e.to_string())
}

fn quote(quantity: u32) -> Quote {
    Quote {
        sku: "tea-42".into(),
        quantity,
        weights: vec![0.25, 1.5],
    }
}

/// A typed request and a typed event in `encoding`, end to end.
pub(super) async fn round_trip(fixture: &dyn Fixture, encoding: Encoding) -> CaseResult {
    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let requests = unique_subject("codec-price");
    let events = unique_subject("codec-quoted");
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<Quote>();
    let running = Service::new("codec", server)
        .state(seen_tx)
        .on(&requests, price)
        .on_ordered(&events, record)
        .start()
        .await?;
    // The caller's route table names the codec; nothing else changes.
    let mut table = RouteTable::new(Style::Sync);
    table.push(RouteRule {
        codec: encoding,
        ..RouteRule::new(&requests)
    })?;
    table.push(RouteRule {
        codec: encoding,
        style: Some(Style::Async),
        ..RouteRule::new(&events)
    })?;
    let routed = Bus::from_routes(
        table,
        BTreeMap::from([(DEFAULT_TRANSPORT.to_owned(), client.clone())]),
    )?;

    // On the wire: the request and its reply carry the encoding's content-type.
    let reply = client
        .request(&requests, Message::encode_as(encoding, &quote(2))?)
        .await?;
    ensure!(
        reply.encoding() == encoding,
        "the reply came back as {:?}, not {}",
        reply.headers.get(wire::CONTENT_TYPE),
        encoding.content_type()
    );
    let priced: Priced = encoding.decode(&reply.payload)?;
    ensure!(priced.cents == 500, "got {priced:?}");

    // Typed `send` on the routes.
    match routed.send::<_, Priced>(&requests, &quote(3)).await? {
        Sent::Replied(priced) => ensure!(
            priced
                == Priced {
                    sku: "tea-42".into(),
                    cents: 750
                },
            "got {priced:?}"
        ),
        other => return Err(Failure(format!("a sync route gave {other:?}"))),
    }
    // Garbage in the encoding is refused with a codec error before the handler runs.
    let mut garbage = Message::new(&b"\xc1\xff\x00 not it"[..]);
    garbage
        .headers
        .insert(wire::CONTENT_TYPE, encoding.content_type());
    expect_kind(
        client.request(&requests, garbage).await,
        ErrorKind::Codec,
        "a garbled payload",
    )?;
    let sent: Sent<()> = routed.send(&events, &quote(4)).await?;
    ensure!(sent.is_accepted(), "an async route gave {sent:?}");
    let got = tokio::time::timeout(RECEIVE_WITHIN, seen.recv())
        .await
        .map_err(|_| Failure(format!("the {encoding} event was not handled")))?
        .ok_or_else(|| Failure("event handler gone".into()))?;
    ensure!(got == quote(4), "got {got:?}");
    running.shutdown().await;
    Ok(())
}

#[cfg(feature = "msgpack")]
pub(super) async fn msgpack_round_trip(fixture: &dyn Fixture) -> CaseResult {
    round_trip(fixture, Encoding::MsgPack).await
}

#[cfg(feature = "cbor")]
pub(super) async fn cbor_round_trip(fixture: &dyn Fixture) -> CaseResult {
    round_trip(fixture, Encoding::Cbor).await
}

/// Protocol Buffers messages for [`protobuf_round_trip`], as prost generates them.
#[cfg(feature = "protobuf")]
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Quote {
        #[prost(string, tag = "1")]
        pub sku: String,
        #[prost(uint32, tag = "2")]
        pub quantity: u32,
        #[prost(double, repeated, tag = "3")]
        pub weights: Vec<f64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Priced {
        #[prost(string, tag = "1")]
        pub sku: String,
        #[prost(uint64, tag = "2")]
        pub cents: u64,
    }

    pub fn quote(quantity: u32) -> Quote {
        Quote {
            sku: "tea-42".into(),
            quantity,
            weights: vec![0.25, 1.5],
        }
    }
}

/// A prost request and a prost event, end to end: `send` of a `Proto` on a
/// route with `codec = "protobuf"`, a handler taking and returning `Proto`,
/// `content-type: application/protobuf` both ways, and garbage refused with
/// a codec error before the handler runs.
#[cfg(feature = "protobuf")]
pub(super) async fn protobuf_round_trip(fixture: &dyn Fixture) -> CaseResult {
    use crate::payload::Proto;
    use proto::{quote, Priced, Quote};

    async fn price(Proto(quote): Proto<Quote>) -> Result<Proto<Priced>, String> {
        Ok(Proto(Priced {
            cents: u64::from(quote.quantity) * 250,
            sku: quote.sku,
        }))
    }
    async fn record(
        Proto(quote): Proto<Quote>,
        State(seen): State<tokio::sync::mpsc::UnboundedSender<Quote>>,
    ) -> Result<(), String> {
        seen.send(quote).map_err(|e| e.to_string())
    }

    let (server, client) = (fixture.connect().await?, fixture.connect().await?);
    let requests = unique_subject("protobuf-price");
    let events = unique_subject("protobuf-quoted");
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<Quote>();
    let running = Service::new("protobuf", server)
        .state(seen_tx)
        .on(&requests, price)
        .on_ordered(&events, record)
        .start()
        .await?;
    let mut table = RouteTable::new(Style::Sync);
    table.push(RouteRule {
        codec: Encoding::Protobuf,
        ..RouteRule::new(&requests)
    })?;
    table.push(RouteRule {
        codec: Encoding::Protobuf,
        style: Some(Style::Async),
        ..RouteRule::new(&events)
    })?;
    let routed = Bus::from_routes(
        table,
        BTreeMap::from([(DEFAULT_TRANSPORT.to_owned(), client.clone())]),
    )?;

    // On the wire: both ways carry `application/protobuf`.
    let reply = client
        .request(&requests, Proto(quote(2)).to_message())
        .await?;
    ensure!(
        reply.encoding() == Encoding::Protobuf,
        "the reply came back as {:?}",
        reply.headers.get(wire::CONTENT_TYPE)
    );
    let priced = <Priced as prost::Message>::decode(reply.payload.clone())
        .map_err(|e| Failure(format!("the reply is not a Priced: {e}")))?;
    ensure!(priced.cents == 500, "got {priced:?}");

    match routed
        .send::<_, Proto<Priced>>(&requests, &Proto(quote(3)))
        .await?
    {
        Sent::Replied(Proto(priced)) => ensure!(
            priced
                == Priced {
                    sku: "tea-42".into(),
                    cents: 750
                },
            "got {priced:?}"
        ),
        other => return Err(Failure(format!("a sync route gave {other:?}"))),
    }
    // A serde value on a protobuf route has no field numbers: refused before sending.
    expect_kind(
        routed.send::<_, ()>(&requests, &"not a message").await,
        ErrorKind::Codec,
        "a serde value on a protobuf route",
    )?;
    // Truncated varint: not a Quote.
    let garbage =
        Message::new(&b"\x10\xff\xff\xff"[..]).with_header(wire::CONTENT_TYPE, wire::PROTOBUF);
    expect_kind(
        client.request(&requests, garbage).await,
        ErrorKind::Codec,
        "a garbled payload",
    )?;
    let sent: Sent<()> = routed.send(&events, &Proto(quote(4))).await?;
    ensure!(sent.is_accepted(), "an async route gave {sent:?}");
    let got = tokio::time::timeout(RECEIVE_WITHIN, seen.recv())
        .await
        .map_err(|_| Failure("the protobuf event was not handled".into()))?
        .ok_or_else(|| Failure("event handler gone".into()))?;
    ensure!(got == quote(4), "got {got:?}");
    running.shutdown().await;
    Ok(())
}
