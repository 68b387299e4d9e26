//! Conformance cases for the synchronous style: request/reply.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::fixture::Fixture;
use super::support::{ensure, expect_kind, unique_subject, CaseResult, Failure};
use crate::error::{Error, ErrorKind};
use crate::message::Message;
use crate::subscription::Subscription;

/// Answers every request on `subscription` with `answer(request)`, each on its own task.
pub(super) fn spawn_responder(
    mut subscription: Subscription,
    answer: fn(&Message) -> Message,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(mut incoming) = subscription.next().await {
            tokio::spawn(async move {
                let reply = answer(incoming.message());
                let _ = incoming.reply(reply).await;
            });
        }
    })
}

pub(super) async fn round_trip(fixture: &dyn Fixture) -> CaseResult {
    let (responder, requester) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("round-trip");
    let task = spawn_responder(responder.subscribe(&subject).await?, |request| {
        let mut payload = request.payload.to_vec();
        payload.reverse();
        Message::new(payload)
    });
    let reply = requester.request(&subject, Message::new("ping")).await?;
    ensure!(
        &reply.payload[..] == b"gnip",
        "reply payload was {:?}",
        reply.payload
    );
    task.abort();
    Ok(())
}

pub(super) async fn concurrent_requests(fixture: &dyn Fixture) -> CaseResult {
    const IN_FLIGHT: usize = 1000;
    let (responder, requester) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("concurrent");
    let task = spawn_responder(responder.subscribe(&subject).await?, |request| {
        let mut payload = b"reply-".to_vec();
        payload.extend_from_slice(&request.payload);
        Message::new(payload)
    });
    let mut calls = JoinSet::new();
    for i in 0..IN_FLIGHT {
        let (bus, subject) = (requester.clone(), subject.clone());
        calls.spawn(async move {
            let reply = bus
                .request_with_timeout(
                    &subject,
                    Message::new(i.to_string()),
                    Duration::from_secs(30),
                )
                .await?;
            Ok::<_, Error>((i, reply))
        });
    }
    let mut answered = 0;
    while let Some(joined) = calls.join_next().await {
        let (i, reply) = joined.map_err(|e| Failure(format!("request task failed: {e}")))??;
        let expected = format!("reply-{i}");
        ensure!(
            reply.payload == expected.as_bytes(),
            "request {i} got the reply {:?}, meant for another caller",
            String::from_utf8_lossy(&reply.payload)
        );
        answered += 1;
    }
    ensure!(
        answered == IN_FLIGHT,
        "{answered} of {IN_FLIGHT} requests answered"
    );
    task.abort();
    Ok(())
}

pub(super) async fn timeout(fixture: &dyn Fixture) -> CaseResult {
    let (responder, requester) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("timeout");
    let mut subscription = responder.subscribe(&subject).await?;
    // Holds requests without answering them, so only the timeout can end the call.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(incoming) = subscription.next().await {
            held.push(incoming);
        }
    });
    let limit = Duration::from_millis(300);
    let started = Instant::now();
    let result = requester
        .request_with_timeout(&subject, Message::new("anyone?"), limit)
        .await;
    let elapsed = started.elapsed();
    expect_kind(result, ErrorKind::Timeout, "request to a silent responder")?;
    ensure!(elapsed >= limit, "timed out early, after {elapsed:?}");
    ensure!(
        elapsed < limit + Duration::from_secs(3),
        "timeout of {limit:?} took {elapsed:?}"
    );
    silent.abort();
    Ok(())
}

pub(super) async fn no_responders(fixture: &dyn Fixture) -> CaseResult {
    let requester = fixture.connect().await?;
    let subject = unique_subject("no-responders");
    let timeout = Duration::from_secs(5);
    let started = Instant::now();
    let result = requester
        .request_with_timeout(&subject, Message::new("hello?"), timeout)
        .await;
    expect_kind(result, ErrorKind::NoResponders, "request nobody serves")?;
    ensure!(
        started.elapsed() < timeout,
        "no-responders was only reported by the timeout"
    );
    Ok(())
}

pub(super) async fn remote_error(fixture: &dyn Fixture) -> CaseResult {
    let (responder, requester) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("remote-error");
    let mut subscription = responder.subscribe(&subject).await?;
    let task = tokio::spawn(async move {
        while let Some(mut incoming) = subscription.next().await {
            let _ = incoming.reply_error("out of stock: sku 42").await;
        }
    });
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    let result = requester
        .request_with_timeout(&subject, Message::new("reserve"), timeout)
        .await;
    match expect_kind(result, ErrorKind::Remote, "request to a failing handler")? {
        Error::Remote {
            message,
            subject: s,
            ..
        } => {
            ensure!(
                message == "out of stock: sku 42",
                "handler message was {message:?}"
            );
            ensure!(s == subject, "error names subject {s:?}");
        }
        other => return Err(Failure(format!("unexpected {other:?}"))),
    }
    ensure!(
        started.elapsed() < timeout,
        "error reply arrived only at the timeout"
    );
    task.abort();
    Ok(())
}

pub(super) async fn headers_round_trip(fixture: &dyn Fixture) -> CaseResult {
    let (responder, requester) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("request-headers");
    let task = spawn_responder(responder.subscribe(&subject).await?, |request| {
        let mut reply = Message::new("ok");
        for (name, value) in request.headers.iter() {
            if !crate::wire::is_reserved(name) {
                reply.headers.insert(format!("echo-{name}"), value);
            }
        }
        reply
    });
    let request = Message::new("h")
        .with_header("tenant", "acme corp")
        .with_header("X-Trace-Id", "4bf92f3577b34da6")
        .with_header("content-type", "text/plain");
    let reply = requester.request(&subject, request).await?;
    for (name, value) in [
        ("echo-tenant", "acme corp"),
        ("echo-x-trace-id", "4bf92f3577b34da6"),
        ("echo-content-type", "text/plain"),
    ] {
        ensure!(
            reply.headers.get(name) == Some(value),
            "reply header {name} = {:?}, expected {value:?} (all: {:?})",
            reply.headers.get(name),
            reply.headers
        );
    }
    task.abort();
    Ok(())
}

/// Replying with the received request itself (an echo) works everywhere:
/// transports keep their own headers out of what the handler sees.
pub(super) async fn echo_request_as_reply(fixture: &dyn Fixture) -> CaseResult {
    let (responder, requester) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("echo");
    let mut subscription = responder.subscribe(&subject).await?;
    let task = tokio::spawn(async move {
        while let Some(mut incoming) = subscription.next().await {
            let request = incoming.take_message();
            if let Err(err) = incoming.reply(request).await {
                let _ = incoming.reply_error(format!("echo refused: {err}")).await;
            }
        }
    });
    let request = Message::new("echo me").with_header("tenant", "acme");
    let reply = requester.request(&subject, request).await?;
    ensure!(
        &reply.payload[..] == b"echo me",
        "echoed payload was {:?}",
        reply.payload
    );
    ensure!(
        reply.headers.get("tenant") == Some("acme"),
        "echoed headers were {:?}",
        reply.headers
    );
    task.abort();
    Ok(())
}

pub(super) async fn close_drains(fixture: &dyn Fixture) -> CaseResult {
    let (responder, requester) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("drain");
    let mut subscription = responder.subscribe(&subject).await?;
    let (received_tx, received_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut received_tx = Some(received_tx);
        while let Some(mut incoming) = subscription.next().await {
            if let Some(tx) = received_tx.take() {
                let _ = tx.send(());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = incoming.reply(Message::new("late but delivered")).await;
        }
    });
    let call = tokio::spawn({
        let (requester, subject) = (requester.clone(), subject.clone());
        async move { requester.request(&subject, Message::new("slow")).await }
    });
    tokio::time::timeout(Duration::from_secs(10), received_rx)
        .await
        .map_err(|_| Failure("the responder never received the request".into()))?
        .map_err(|_| Failure("responder task ended".into()))?;
    // The responder answers ~300 ms from now; close must wait for that reply.
    let closing = Instant::now();
    requester.close().await?;
    let waited = closing.elapsed();
    ensure!(
        waited >= Duration::from_millis(150),
        "close returned after {waited:?}, before the in-flight request was answered"
    );
    let reply = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .map_err(|_| Failure("in-flight request still pending after close".into()))?
        .map_err(|e| Failure(format!("request task: {e}")))??;
    ensure!(
        &reply.payload[..] == b"late but delivered",
        "in-flight request got {:?}",
        reply.payload
    );
    expect_kind(
        requester
            .request(&subject, Message::new("after close"))
            .await,
        ErrorKind::Closed,
        "request after close",
    )?;
    task.abort();
    Ok(())
}
