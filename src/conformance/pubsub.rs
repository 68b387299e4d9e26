//! Conformance cases for the asynchronous style: publish/subscribe and queue groups.

use std::collections::HashSet;
use std::time::Duration;

use super::fixture::Fixture;
use super::support::{
    ensure, expect_silence, receive, unique_subject, CaseResult, Failure, RECEIVE_WITHIN,
};
use crate::message::Message;
use crate::subscription::Subscription;

pub(super) async fn fan_out(fixture: &dyn Fixture) -> CaseResult {
    const SUBSCRIBERS: usize = 3;
    const EVENTS: usize = 10;
    let publisher = fixture.connect().await?;
    let subject = unique_subject("fan-out");
    let mut subscriptions = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let bus = fixture.connect().await?;
        subscriptions.push(bus.subscribe(&subject).await?);
        connections.push(bus);
    }
    for i in 0..EVENTS {
        publisher
            .publish(&subject, Message::new(i.to_string()))
            .await?;
    }
    for (n, subscription) in subscriptions.iter_mut().enumerate() {
        let mut seen = HashSet::new();
        for _ in 0..EVENTS {
            let incoming = receive(subscription, &format!("event for subscriber {n}")).await?;
            seen.insert(incoming.payload().to_vec());
        }
        ensure!(
            seen.len() == EVENTS,
            "subscriber {n} got duplicates: {seen:?}"
        );
        expect_silence(subscription, "every event was already received").await?;
    }
    Ok(())
}

pub(super) async fn queue_group_once(fixture: &dyn Fixture) -> CaseResult {
    const MEMBERS: usize = 3;
    const EVENTS: usize = 60;
    let publisher = fixture.connect().await?;
    let subject = unique_subject("queue-group");
    let mut members = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..MEMBERS {
        let bus = fixture.connect().await?;
        members.push(bus.queue_subscribe(&subject, "workers").await?);
        connections.push(bus);
    }
    let mut outsider = fixture.connect().await?.subscribe(&subject).await?;
    for i in 0..EVENTS {
        publisher
            .publish(&subject, Message::new(i.to_string()))
            .await?;
    }
    // Every event reaches exactly one member of the group...
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + RECEIVE_WITHIN;
    while received.len() < EVENTS {
        let next = next_from_any(&mut members);
        match tokio::time::timeout_at(deadline, next).await {
            Ok(Some(payload)) => received.push(payload),
            Ok(None) => return Err(Failure("a group member's subscription ended".into())),
            Err(_) => {
                return Err(Failure(format!(
                    "group received {} of {EVENTS} events",
                    received.len()
                )))
            }
        }
    }
    let distinct: HashSet<_> = received.iter().collect();
    ensure!(
        distinct.len() == EVENTS,
        "group members received duplicates"
    );
    for member in &mut members {
        expect_silence(member, "each event goes to one member only").await?;
    }
    // ...while a subscriber outside the group still gets every event.
    for i in 0..EVENTS {
        let incoming = receive(&mut outsider, "event for the subscriber outside the group").await?;
        ensure!(
            incoming.payload() == i.to_string().as_bytes(),
            "outside subscriber got events out of order"
        );
    }
    Ok(())
}

async fn next_from_any(members: &mut [Subscription]) -> Option<Vec<u8>> {
    let nexts = members.iter_mut().map(|m| Box::pin(m.next()));
    let (incoming, _, _) = futures_util::future::select_all(nexts).await;
    incoming.map(|i| i.payload().to_vec())
}

pub(super) async fn headers_round_trip(fixture: &dyn Fixture) -> CaseResult {
    let (subscriber, publisher) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("event-headers");
    let mut subscription = subscriber.subscribe(&subject).await?;
    let event = Message::new("e")
        .with_header("tenant", "acme corp")
        .with_header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .with_header("empty", "");
    publisher.publish(&subject, event.clone()).await?;
    let incoming = receive(&mut subscription, "event with headers").await?;
    for (name, value) in event.headers.iter() {
        ensure!(
            incoming.headers().get(name) == Some(value),
            "header {name} = {:?}, expected {value:?}",
            incoming.headers().get(name)
        );
    }
    Ok(())
}

pub(super) async fn ordering(fixture: &dyn Fixture) -> CaseResult {
    const EVENTS: usize = 1000;
    let (subscriber, publisher) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("ordering");
    let mut subscription = subscriber.subscribe(&subject).await?;
    let publishing = tokio::spawn(async move {
        for i in 0..EVENTS {
            publisher
                .publish(&subject, Message::new(i.to_string()))
                .await?;
        }
        Ok::<_, crate::Error>(())
    });
    for expected in 0..EVENTS {
        let incoming = receive(&mut subscription, &format!("event {expected}")).await?;
        ensure!(
            incoming.payload() == expected.to_string().as_bytes(),
            "expected event {expected}, got {:?}",
            String::from_utf8_lossy(incoming.payload())
        );
    }
    publishing
        .await
        .map_err(|e| Failure(format!("publisher task: {e}")))??;
    Ok(())
}

pub(super) async fn subscribe_then_publish(fixture: &dyn Fixture) -> CaseResult {
    const ROUNDS: usize = 20;
    let (subscriber, publisher) = (fixture.connect().await?, fixture.connect().await?);
    for round in 0..ROUNDS {
        let subject = unique_subject("live");
        let mut subscription = if round % 2 == 0 {
            subscriber.subscribe(&subject).await?
        } else {
            subscriber.queue_subscribe(&subject, "live").await?
        };
        publisher
            .publish(&subject, Message::new(round.to_string()))
            .await?;
        let incoming = receive(
            &mut subscription,
            &format!("event published right after subscribe returned (round {round})"),
        )
        .await?;
        ensure!(
            incoming.payload() == round.to_string().as_bytes(),
            "wrong event"
        );
    }
    Ok(())
}

pub(super) async fn unsubscribe_on_drop(fixture: &dyn Fixture) -> CaseResult {
    let (subscriber, publisher) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("drop");
    let dropped = subscriber.subscribe(&subject).await?;
    let mut kept = subscriber.subscribe(&subject).await?;
    drop(dropped);
    publisher
        .publish(&subject, Message::new("after drop"))
        .await?;
    receive(&mut kept, "event for the remaining subscriber").await?;
    drop(kept);
    if publisher.capabilities().no_responders.is_supported() {
        // The server may take a moment to learn of the unsubscription.
        let deadline = tokio::time::Instant::now() + RECEIVE_WITHIN;
        loop {
            let result = publisher
                .request_with_timeout(&subject, Message::new("anyone?"), Duration::from_secs(2))
                .await;
            match result {
                Err(err) if err.kind() == crate::ErrorKind::NoResponders => break,
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(Failure(format!(
                        "after dropping every subscription, a request still got {result:?}"
                    )))
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    let mut fresh = subscriber.subscribe(&subject).await?;
    publisher.publish(&subject, Message::new("fresh")).await?;
    let incoming = receive(&mut fresh, "event for a new subscriber").await?;
    ensure!(
        incoming.payload() == b"fresh",
        "a dropped subscription's event leaked"
    );
    Ok(())
}

pub(super) async fn wildcards(fixture: &dyn Fixture) -> CaseResult {
    let (subscriber, publisher) = (fixture.connect().await?, fixture.connect().await?);
    let base = unique_subject("wildcards");
    let mut one = subscriber.subscribe(&format!("{base}.*")).await?;
    let mut tail = subscriber.subscribe(&format!("{base}.>")).await?;
    let (shallow, deep) = (format!("{base}.a"), format!("{base}.a.b"));
    publisher.publish(&shallow, Message::new("shallow")).await?;
    publisher.publish(&deep, Message::new("deep")).await?;
    let got = receive(&mut one, "`*` match").await?;
    ensure!(
        got.subject() == shallow,
        "`*` delivered subject {}",
        got.subject()
    );
    expect_silence(&mut one, "`*` matches exactly one token").await?;
    // Order is promised per subject, not across two subjects (two Kafka topics).
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(receive(&mut tail, "`>` match").await?.subject().to_owned());
    }
    seen.sort();
    ensure!(
        seen == [shallow.clone(), deep.clone()],
        "`>` delivered {seen:?}, not {shallow} and {deep} once each"
    );
    expect_silence(&mut tail, "`>` delivers each event once").await?;
    Ok(())
}

pub(super) async fn close_ends_subscriptions(fixture: &dyn Fixture) -> CaseResult {
    let (subscriber, publisher) = (fixture.connect().await?, fixture.connect().await?);
    let subject = unique_subject("close-subs");
    let mut subscription = subscriber.subscribe(&subject).await?;
    publisher
        .publish(&subject, Message::new("before close"))
        .await?;
    let first = receive(&mut subscription, "event published before close").await?;
    ensure!(first.payload() == b"before close", "wrong event");
    subscriber.close().await?;
    match tokio::time::timeout(RECEIVE_WITHIN, subscription.next()).await {
        Ok(None) => Ok(()),
        Ok(Some(incoming)) => Err(Failure(format!(
            "subscription yielded {:?} after close instead of ending",
            incoming.message()
        ))),
        Err(_) => Err(Failure("subscription did not end after close".into())),
    }
}
