//! Mapping between switchboard messages and Redis: stream entries (a
//! `payload` field and one `h:NAME` field per header), the frame a request
//! or reply travels in over pub/sub, and subject patterns as channel globs.

use bytes::{BufMut, Bytes, BytesMut};
use redis::Value;

use switchboard_core::error::Error;
use switchboard_core::headers::Headers;
use switchboard_core::message::Message;

/// The backend name used in errors and capabilities.
pub(crate) const BACKEND: &str = "redis";

/// The stream entry field that holds the payload.
pub(crate) const PAYLOAD_FIELD: &str = "payload";
/// What starts a stream entry field that holds a header.
pub(crate) const HEADER_FIELD: &str = "h:";

/// What starts every pub/sub frame (and its version).
const FRAME_MAGIC: &[u8; 4] = b"SBR1";

/// Adds `message` to `command` as stream entry fields.
pub(crate) fn entry_fields(command: &mut redis::Cmd, message: &Message) {
    command.arg(PAYLOAD_FIELD).arg(message.payload.as_ref());
    for (name, value) in message.headers.iter() {
        command.arg(format!("{HEADER_FIELD}{name}")).arg(value);
    }
}

/// One stream entry as read: its id and its message.
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) message: Message,
}

/// The message in a stream entry's flat field list: `payload` (empty when
/// absent) and every `h:NAME` field that is a portable header; other
/// fields, and fields that are not text, are left out.
fn entry_message(fields: &[Value]) -> Message {
    let mut headers = Headers::new();
    let mut payload = Bytes::new();
    for pair in fields.chunks_exact(2) {
        let (Some(field), Some(value)) = (value_bytes(&pair[0]), value_bytes(&pair[1])) else {
            continue;
        };
        if field == PAYLOAD_FIELD.as_bytes() {
            payload = Bytes::copy_from_slice(value);
        } else if let Some(name) = field.strip_prefix(HEADER_FIELD.as_bytes()) {
            if let (Ok(name), Ok(text)) = (std::str::from_utf8(name), std::str::from_utf8(value)) {
                headers.insert_received(name, text);
            }
        }
    }
    Message { payload, headers }
}

/// The entries of a list of `[id, [field, value, …]]` (`XCLAIM`, one
/// stream of `XREAD`); an entry deleted while pending (nil fields) or
/// malformed is skipped, and an entry another client wrote with odd fields
/// still reads, so one bad entry never stalls a stream.
pub(crate) fn entries(value: &Value) -> Vec<Entry> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(parts) = item else {
                return None;
            };
            let [id, fields] = parts.as_slice() else {
                return None;
            };
            let id = std::str::from_utf8(value_bytes(id)?).ok()?.to_owned();
            let Value::Array(fields) = fields else {
                return None;
            };
            Some(Entry {
                id,
                message: entry_message(fields),
            })
        })
        .collect()
}

/// The streams of an `XREAD`/`XREADGROUP` reply (a map in RESP3, a list of
/// `[key, entries]` pairs in RESP2; nil when the block ran out), by key.
pub(crate) fn read_reply(value: &Value) -> Vec<(String, Vec<Entry>)> {
    let pairs: Vec<(&Value, &Value)> = match value {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => Some((&pair[0], &pair[1])),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(key, value)| {
            let key = std::str::from_utf8(value_bytes(key)?).ok()?.to_owned();
            Some((key, entries(value)))
        })
        .collect()
}

/// The next cursor and the entries of an `XAUTOCLAIM` reply.
pub(crate) fn autoclaim_reply(value: &Value) -> (String, Vec<Entry>) {
    let Value::Array(parts) = value else {
        return ("0-0".to_owned(), Vec::new());
    };
    let next = parts
        .first()
        .and_then(value_bytes)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("0-0")
        .to_owned();
    let claimed = parts.get(1).map(entries).unwrap_or_default();
    (next, claimed)
}

/// The bytes of a bulk or simple string value.
pub(crate) fn value_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

/// A message as one pub/sub frame: `SBR1`, the number of headers (u16),
/// each header as name length (u16), name, value length (u32), value, and
/// then the payload to the end. Integers are big-endian.
pub(crate) fn frame(message: &Message) -> Bytes {
    let headers_len: usize = message
        .headers
        .iter()
        .map(|(n, v)| 6 + n.len() + v.len())
        .sum();
    let mut out = BytesMut::with_capacity(6 + headers_len + message.payload.len());
    out.put_slice(FRAME_MAGIC);
    out.put_u16(message.headers.len() as u16);
    for (name, value) in message.headers.iter() {
        out.put_u16(name.len() as u16);
        out.put_slice(name.as_bytes());
        out.put_u32(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
    out.put_slice(&message.payload);
    out.freeze()
}

/// The message in a pub/sub frame; an error naming what is wrong for bytes
/// that are not one. Headers that are not portable are left out.
pub(crate) fn unframe(bytes: &[u8]) -> Result<Message, &'static str> {
    let rest = bytes
        .strip_prefix(FRAME_MAGIC.as_slice())
        .ok_or("not a switchboard frame (no SBR1 magic)")?;
    let (count, mut rest) = take_u16(rest)?;
    let mut headers = Headers::new();
    for _ in 0..count {
        let (name_len, after) = take_u16(rest)?;
        let (name, after) = take(after, name_len as usize)?;
        let (value_len, after) = take_u32(after)?;
        let (value, after) = take(after, value_len as usize)?;
        rest = after;
        match (std::str::from_utf8(name), std::str::from_utf8(value)) {
            (Ok(name), Ok(value)) => {
                headers.insert_received(name, value);
            }
            _ => return Err("a header that is not UTF-8"),
        }
    }
    Ok(Message {
        payload: Bytes::copy_from_slice(rest),
        headers,
    })
}

fn take(bytes: &[u8], len: usize) -> Result<(&[u8], &[u8]), &'static str> {
    if bytes.len() < len {
        return Err("the frame ends inside a header");
    }
    Ok(bytes.split_at(len))
}

fn take_u16(bytes: &[u8]) -> Result<(u16, &[u8]), &'static str> {
    let (head, rest) = take(bytes, 2)?;
    Ok((u16::from_be_bytes([head[0], head[1]]), rest))
}

fn take_u32(bytes: &[u8]) -> Result<(u32, &[u8]), &'static str> {
    let (head, rest) = take(bytes, 4)?;
    Ok((
        u32::from_be_bytes([head[0], head[1], head[2], head[3]]),
        rest,
    ))
}

/// A subject pattern as a channel glob for `PSUBSCRIBE`: `*` and `>` both
/// become `*` (which also crosses dots, so what arrives is checked against
/// the pattern again); glob characters in literal tokens are escaped.
pub(crate) fn glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for (i, token) in pattern.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        if token == "*" || token == ">" {
            out.push('*');
            continue;
        }
        for c in token.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// A redis error as a switchboard error.
pub(crate) fn error(err: redis::RedisError) -> Error {
    Error::backend(BACKEND, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let mut headers = Headers::new();
        headers.insert("x-tenant", "acme");
        headers.insert("sb-correlation-id", "42");
        let message = Message {
            payload: Bytes::from_static(b"{\"n\":1}"),
            headers,
        };
        let back = unframe(&frame(&message)).unwrap();
        assert_eq!(back.payload, message.payload);
        assert_eq!(back.headers.get("x-tenant"), Some("acme"));
        assert_eq!(back.headers.get("sb-correlation-id"), Some("42"));
        for garbage in [
            &b""[..],
            b"SBR",
            b"XXXX\0\0",
            b"SBR1\0",
            b"SBR1\0\x01\0\x05ab",
            b"SBR1\0\x01\0\x01a\xff\xff\xff\xff",
        ] {
            assert!(unframe(garbage).is_err(), "{garbage:?}");
        }
        let mut lengths = frame(&message).to_vec();
        lengths.truncate(12);
        assert!(unframe(&lengths).is_err());
    }

    #[test]
    fn odd_entries_are_skipped_or_read_in_part() {
        let bulk = |b: &[u8]| Value::BulkString(b.to_vec());
        let reply = Value::Array(vec![
            Value::Array(vec![bulk(b"1-0"), Value::Nil]),
            Value::Int(3),
            Value::Array(vec![
                bulk(b"2-0"),
                Value::Array(vec![
                    bulk(b"payload"),
                    bulk(b"x"),
                    bulk(b"h:\xff"),
                    bulk(b"v"),
                    bulk(b"h:x-a"),
                    bulk(b"\xfe"),
                    bulk(b"h:x-b"),
                    bulk(b"b"),
                    bulk(b"dangling"),
                ]),
            ]),
        ]);
        let read = entries(&reply);
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].id, "2-0");
        assert_eq!(read[0].message.payload.as_ref(), b"x");
        assert_eq!(read[0].message.headers.len(), 1);
        assert_eq!(read[0].message.headers.get("x-b"), Some("b"));
        let resp3 = Value::Map(vec![(bulk(b"k"), reply.clone())]);
        assert_eq!(read_reply(&resp3)[0].1.len(), 1);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk(b"k"), reply])]);
        assert_eq!(read_reply(&resp2)[0].0, "k");
        assert!(read_reply(&Value::Nil).is_empty());
    }

    #[test]
    fn patterns_become_globs() {
        assert_eq!(glob("orders.placed"), "orders.placed");
        assert_eq!(glob("orders.*"), "orders.*");
        assert_eq!(glob("orders.>"), "orders.*");
        assert_eq!(glob("a?.[b]"), "a\\?.\\[b\\]");
    }
}
