//! The reserved header names, the error statuses and which names a caller
//! may set: plain constants that headers, codecs and messages use without
//! depending on the rest of the wire contract.

/// The prefix of every reserved header name.
pub const RESERVED_PREFIX: &str = "sb-";
/// Media type of the payload.
pub const CONTENT_TYPE: &str = "content-type";
/// Correlates a reply with its request on backends without native replies.
pub const CORRELATION_ID: &str = "sb-correlation-id";
/// Where the reply to a request goes, on backends without native replies.
pub const REPLY_TO: &str = "sb-reply-to";
/// The requester's remaining timeout, in whole milliseconds.
pub const TIMEOUT_MS: &str = "sb-timeout-ms";
/// Error status of a reply; absent on success.
pub const STATUS: &str = "sb-status";
/// Error message of an error reply.
pub const ERROR: &str = "sb-error";
/// Machine-readable code of a handler's error reply, when the handler gave one.
pub const ERROR_CODE: &str = "sb-error-code";
/// On a `handler-error` reply: the service whose handler refused first.
pub const ERROR_SERVICE: &str = "sb-error-service";
/// On a `handler-error` reply: the subject whose handler refused first.
pub const ERROR_SUBJECT: &str = "sb-error-subject";
/// On a `payload-too-large` reply: the refused payload's size in bytes.
pub const PAYLOAD_SIZE: &str = "sb-payload-size";
/// On a `payload-too-large` reply: the largest payload the responder accepts, in bytes.
pub const PAYLOAD_LIMIT: &str = "sb-payload-limit";
/// Idempotency key of a publish (JetStream de-duplicates on it).
pub const MESSAGE_ID: &str = "sb-message-id";
/// Partition key for backends that partition (Kafka).
pub const KEY: &str = "sb-key";
/// On a deferred command (a sync send published instead, `fallback = "async"`)
/// and on its outcome: the command's id.
pub const DEFERRED_ID: &str = "sb-deferred-id";
/// On a deferred command's outcome that is a refusal: the handler's error message.
pub const DEFERRED_ERROR: &str = "sb-deferred-error";
/// On a refused deferred command's outcome: the rejection's code, if it had one.
pub const DEFERRED_CODE: &str = "sb-deferred-code";
/// On a refused deferred command's outcome: the service that refused.
pub const DEFERRED_SERVICE: &str = "sb-deferred-service";
/// On a dead-lettered event: the subject the event was first published to.
pub const DEAD_LETTER_SUBJECT: &str = "sb-dead-letter-subject";
/// On a dead-lettered event: the handler's last error.
pub const DEAD_LETTER_ERROR: &str = "sb-dead-letter-error";
/// On a dead-lettered event: how many times the handler ran.
pub const DEAD_LETTER_ATTEMPTS: &str = "sb-dead-letter-attempts";
/// On a dead-lettered event: the service that gave up on it.
pub const DEAD_LETTER_SERVICE: &str = "sb-dead-letter-service";
/// On a dead-lettered event: the code of the handler's last rejection, if it had one.
pub const DEAD_LETTER_CODE: &str = "sb-dead-letter-code";
/// On a dead-lettered event: `final` when the handler refused it for good
/// (no retries), `retries` when its attempts ran out, `shutdown` when the
/// service stopped while retrying it.
pub const DEAD_LETTER_CAUSE: &str = "sb-dead-letter-cause";

/// The media type the JSON helpers use.
pub const JSON: &str = "application/json";
/// The `content-type` of MessagePack payloads.
pub const MSGPACK: &str = "application/msgpack";
/// The `content-type` of CBOR payloads.
pub const CBOR: &str = "application/cbor";
/// The `content-type` of Protocol Buffers payloads.
pub const PROTOBUF: &str = "application/protobuf";

/// `sb-status`: the responder's handler returned an error.
pub const STATUS_HANDLER_ERROR: &str = "handler-error";
/// `sb-status`: the responder could not decode the request payload.
pub const STATUS_CODEC_ERROR: &str = "codec-error";
/// `sb-status`: no handler serves the subject at the responder.
pub const STATUS_NO_RESPONDERS: &str = "no-responders";
/// `sb-status`: the request body was larger than the responder accepts.
pub const STATUS_PAYLOAD_TOO_LARGE: &str = "payload-too-large";
/// `sb-status`: the responder gave up because the caller's deadline passed.
pub const STATUS_TIMEOUT: &str = "timeout";

/// Whether `name` (lower case) is in the reserved `sb-` namespace.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// Whether callers may set this reserved header themselves.
pub fn is_settable(name: &str) -> bool {
    name == KEY || name == MESSAGE_ID
}
