//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, not a public API).
//!
//! Each takes arbitrary bytes as they could arrive from the network or from a
//! configuration file and feeds them to one decoder. None may panic: bad input
//! must come back as an error.

use crate::headers::Headers;
use crate::message::Message;

/// Splits fuzz input into header pairs: lines of `name:value`.
fn header_pairs(data: &[u8]) -> Vec<(&[u8], &[u8])> {
    data.split(|b| *b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            Some((&line[..colon], &line[colon + 1..]))
        })
        .collect()
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `traceparent`/`tracestate` headers of a received message.
pub fn trace_context(data: &[u8]) {
    let mut headers = Headers::new();
    for (name, value) in header_pairs(data) {
        if let (Some(name), Some(value)) = (text(name), text(value)) {
            headers.insert(name, value);
        }
    }
    if let Some(context) = crate::trace::TraceContext::from_headers(&headers) {
        // What was parsed must print back as a valid traceparent.
        crate::trace::TraceContext::parse(&context.to_string()).expect("round trip");
    }
}

/// A reply's `sb-status`/`sb-error` headers, turned into the caller's error.
pub fn error_reply(data: &[u8]) {
    let mut reply = Message::new(Vec::new());
    for (name, value) in header_pairs(data) {
        if let (Some(name), Some(value)) = (text(name), text(value)) {
            reply.headers.insert(name, value);
        }
    }
    let _ = crate::wire::error_from_reply("fuzz.subject", &reply);
    let _ = reply.headers.validate_outgoing();
}

/// A backend URL, as `connect` and `Config` parse it.
pub fn url(data: &[u8]) {
    if let Some(raw) = text(data) {
        let _ = crate::transport::Endpoint::parse(raw);
        let _ = crate::settings::TransportSettings::new(raw).to_url();
    }
}

/// A settings file.
pub fn settings(data: &[u8]) {
    if let Some(raw) = text(data) {
        if let Ok(settings) = crate::Settings::from_toml(raw) {
            let table = settings
                .route_table()
                .expect("validated settings build a table");
            let _ = table.decide("orders.placed");
        }
    }
}

/// Subjects and patterns, as subscriptions and routes receive them.
pub fn subject(data: &[u8]) {
    if let Some(raw) = text(data) {
        let (pattern, subject) = raw.split_once('\n').unwrap_or((raw, raw));
        let _ = crate::subject::validate(subject);
        if crate::subject::validate_pattern(pattern).is_ok() {
            let _ = crate::subject::matches(pattern, subject);
            let _ = crate::subject::covers(pattern, pattern);
        }
    }
}

/// The HTTP backend's decoders: request headers, `sb-deliver`, and a peer's snapshot.
#[cfg(feature = "http")]
pub fn http(data: &[u8]) {
    crate::http::fuzz_decoders(data, &header_pairs(data));
}

/// The RabbitMQ backend's decoder: the bytes as AMQP basic properties (a
/// header table among them) and a payload, read as a message.
#[cfg(feature = "amqp")]
pub fn amqp(data: &[u8]) {
    crate::amqp::fuzz_decoders(data);
}

/// The Redis backend's decoders: a pub/sub frame, and the bytes as a RESP
/// reply read as stream entries.
#[cfg(feature = "redis")]
pub fn redis(data: &[u8]) {
    crate::redis::fuzz_decoders(data);
}

/// The gRPC backend's decoders: an envelope and a snapshot as protobuf bytes
/// (into a message, and into the peer directory), and `grpc-timeout`.
#[cfg(feature = "grpc")]
pub fn grpc(data: &[u8]) {
    crate::grpc::fuzz_decoders(data);
}
