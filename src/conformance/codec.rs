//! Conformance cases for codecs beyond JSON (features `msgpack`, `cbor`): a
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
