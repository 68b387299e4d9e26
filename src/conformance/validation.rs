//! Conformance cases for bad input and limits: every backend rejects the same things the same way.

use std::time::Duration;

use super::fixture::Fixture;
use super::support::{ensure, expect_kind, patterned_payload, receive, unique_subject, CaseResult};
use crate::error::ErrorKind;
use crate::message::Message;

/// Room left for headers and framing when testing the largest payload.
const HEADER_ROOM: usize = 4 * 1024;

pub(super) async fn invalid_subjects(fixture: &dyn Fixture) -> CaseResult {
    let bus = fixture.connect().await?;
    let too_long = "x".repeat(crate::subject::MAX_SUBJECT_LEN + 1);
    for bad in [
        "",
        "a..b",
        ".a",
        "a.",
        "a b",
        "a/b",
        "ä",
        "a\r\nb",
        too_long.as_str(),
    ] {
        expect_kind(
            bus.publish(bad, Message::new("x")).await,
            ErrorKind::InvalidSubject,
            &format!("publish to {bad:?}"),
        )?;
        expect_kind(
            bus.request(bad, Message::new("x")).await,
            ErrorKind::InvalidSubject,
            &format!("request to {bad:?}"),
        )?;
        expect_kind(
            bus.subscribe(bad).await,
            ErrorKind::InvalidSubject,
            &format!("subscribe to {bad:?}"),
        )?;
    }
    for pattern in ["orders.*", "orders.>"] {
        expect_kind(
            bus.publish(pattern, Message::new("x")).await,
            ErrorKind::InvalidSubject,
            &format!("publish to wildcard {pattern:?}"),
        )?;
    }
    expect_kind(
        bus.subscribe("orders.>.created").await,
        ErrorKind::InvalidSubject,
        "`>` before the last token",
    )?;
    expect_kind(
        bus.queue_subscribe("orders", "bad group").await,
        ErrorKind::InvalidSubject,
        "queue group with a space",
    )?;
    still_works(fixture, &bus).await
}

pub(super) async fn invalid_headers(fixture: &dyn Fixture) -> CaseResult {
    let bus = fixture.connect().await?;
    let subject = unique_subject("bad-headers");
    let cases = [
        Message::new("x").with_header("bad name", "v"),
        Message::new("x").with_header("x-value", "line\r\nbreak"),
        Message::new("x").with_header("x-value", "caf\u{e9}"),
        Message::new("x").with_header("sb-status", "handler-error"),
        Message::new("x").with_header("sb-reply-to", "elsewhere"),
    ];
    for message in cases {
        let what = format!("headers {:?}", message.headers);
        expect_kind(
            bus.publish(&subject, message.clone()).await,
            ErrorKind::InvalidHeader,
            &what,
        )?;
        expect_kind(
            bus.request(&subject, message).await,
            ErrorKind::InvalidHeader,
            &what,
        )?;
    }
    still_works(fixture, &bus).await
}

pub(super) async fn payload_sizes(fixture: &dyn Fixture) -> CaseResult {
    let (responder, requester) = (fixture.connect().await?, fixture.connect().await?);
    let limit = requester.capabilities().max_payload;
    let largest = (1024 * 1024).min(limit.saturating_sub(HEADER_ROOM));
    let subject = unique_subject("payload-sizes");
    let event_subject = unique_subject("payload-events");
    let echo = super::request_reply::spawn_responder(responder.subscribe(&subject).await?, |r| {
        Message::new(r.payload.clone())
    });
    let mut events = responder.subscribe(&event_subject).await?;
    for size in [0, 1, 1024, 64 * 1024, largest] {
        let payload = patterned_payload(size);
        let reply = requester
            .request_with_timeout(
                &subject,
                Message::new(payload.clone()),
                Duration::from_secs(20),
            )
            .await?;
        ensure!(
            reply.payload == payload,
            "request/reply of {size} bytes came back altered"
        );
        requester
            .publish(&event_subject, Message::new(payload.clone()))
            .await?;
        let incoming = receive(&mut events, &format!("event of {size} bytes")).await?;
        ensure!(
            incoming.payload() == &payload[..],
            "event of {size} bytes came back altered"
        );
    }
    echo.abort();
    Ok(())
}

pub(super) async fn payload_too_large(fixture: &dyn Fixture) -> CaseResult {
    let bus = fixture.connect().await?;
    let limit = bus.capabilities().max_payload;
    let subject = unique_subject("too-large");
    let oversized = Message::new(vec![0u8; limit + 1]);
    let err = expect_kind(
        bus.publish(&subject, oversized.clone()).await,
        ErrorKind::PayloadTooLarge,
        "publish over the limit",
    )?;
    ensure!(
        matches!(err, crate::Error::PayloadTooLarge { size, limit: l } if size == limit + 1 && l == limit),
        "error does not report the sizes: {err}"
    );
    expect_kind(
        bus.request(&subject, oversized).await,
        ErrorKind::PayloadTooLarge,
        "request over the limit",
    )?;
    still_works(fixture, &bus).await
}

/// After rejected calls, the same connection still publishes and delivers.
async fn still_works(fixture: &dyn Fixture, bus: &crate::Bus) -> CaseResult {
    let subscriber = fixture.connect().await?;
    let subject = unique_subject("still-works");
    let mut subscription = subscriber.subscribe(&subject).await?;
    bus.publish(&subject, Message::new("fine")).await?;
    let incoming = receive(&mut subscription, "event after rejected calls").await?;
    ensure!(
        incoming.payload() == b"fine",
        "wrong event after rejected calls"
    );
    Ok(())
}

pub(super) async fn closed_refuses(fixture: &dyn Fixture) -> CaseResult {
    let bus = fixture.connect().await?;
    let subject = unique_subject("closed");
    bus.close().await?;
    expect_kind(
        bus.publish(&subject, Message::new("x")).await,
        ErrorKind::Closed,
        "publish after close",
    )?;
    expect_kind(
        bus.request(&subject, Message::new("x")).await,
        ErrorKind::Closed,
        "request after close",
    )?;
    expect_kind(
        bus.subscribe(&subject).await,
        ErrorKind::Closed,
        "subscribe after close",
    )?;
    bus.close().await?;
    Ok(())
}
