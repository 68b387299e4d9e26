//! Subject syntax: one definition, checked at the API boundary for every backend.
//!
//! A subject is a list of tokens separated by dots, such as `orders.created` or
//! `inventory.v2.reserve`. The rules are chosen so that a subject valid here is
//! valid on every backend without escaping: as a NATS subject, a Kafka topic
//! name and an HTTP path segment.
//!
//! - 1 to [`MAX_SUBJECT_LEN`] bytes;
//! - tokens are non-empty and made of ASCII letters, digits, `-` and `_`;
//! - subscription patterns may also use the wildcards `*` (exactly one token)
//!   and `>` (one or more tokens, last position only), each as a whole token.
//!
//! Queue group names follow the token rules (no dots, no wildcards).

use crate::error::{Error, Result};

/// The longest subject accepted, in bytes (Kafka's topic limit is 249, minus room for prefixes).
pub const MAX_SUBJECT_LEN: usize = 200;

/// The longest queue group name accepted, in bytes.
pub const MAX_GROUP_LEN: usize = 100;

/// Matches exactly one token in a subscription pattern.
pub const WILDCARD_ONE: &str = "*";

/// Matches one or more trailing tokens in a subscription pattern.
pub const WILDCARD_TAIL: &str = ">";

fn invalid(subject: &str, reason: impl Into<String>) -> Error {
    Error::InvalidSubject {
        subject: subject.to_owned(),
        reason: reason.into(),
    }
}

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// What a byte may be in a concrete subject, by table: a handful of
/// instructions per byte on every publish instead of a chain of range checks.
const BAD: u8 = 0;
const TOKEN: u8 = 1;
const DOT: u8 = 2;

static CLASS: [u8; 256] = {
    let mut class = [BAD; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            class[byte] = TOKEN;
        } else if b == b'.' {
            class[byte] = DOT;
        }
        byte += 1;
    }
    class
};

thread_local! {
    /// The subject [`validate`] last found valid on this thread.
    static LAST_VALID: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Whether `bytes` is a valid concrete subject: token bytes and single dots,
/// not starting or ending with a dot, within the length limit. One pass
/// without a branch per byte: what is wrong is gathered, then looked at once.
fn is_plain_subject(bytes: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if bytes.len() > MAX_SUBJECT_LEN || first == b'.' || last == b'.' {
        return false;
    }
    let mut wrong = false;
    let mut after_dot = false;
    for &byte in bytes {
        let class = CLASS[byte as usize];
        let dot = class == DOT;
        wrong |= (class == BAD) | (dot & after_dot);
        after_dot = dot;
    }
    !wrong
}

fn check_shape(subject: &str) -> Result<()> {
    if subject.is_empty() {
        return Err(invalid(subject, "subject is empty"));
    }
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(invalid(
            subject,
            format!("longer than {MAX_SUBJECT_LEN} bytes"),
        ));
    }
    Ok(())
}

fn check_token(subject: &str, token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(invalid(
            subject,
            "empty token (leading, trailing or double dot)",
        ));
    }
    // By character, not byte: `é` is named as itself, not as its first UTF-8
    // byte, and by code point too, which survives ASCII-only error headers.
    let allowed = |c: char| u8::try_from(c).is_ok_and(is_token_byte);
    if let Some(bad) = token.chars().find(|c| !allowed(*c)) {
        let code_point = match bad.is_ascii() {
            true => String::new(),
            false => format!(" (U+{:04X})", u32::from(bad)),
        };
        return Err(invalid(
            subject,
            format!("character {bad:?}{code_point} is not allowed (use letters, digits, `-`, `_`)"),
        ));
    }
    Ok(())
}

/// Checks a concrete subject, as used by `publish` and `request` (no wildcards).
///
/// ```
/// assert!(switchboard::subject::validate("orders.created").is_ok());
/// assert!(switchboard::subject::validate("orders.*").is_err());
/// assert!(switchboard::subject::validate("orders..created").is_err());
/// ```
#[inline]
pub fn validate(subject: &str) -> Result<()> {
    // Every call checks its subject, and most callers use a few subjects over
    // and over: the last one this thread found valid is compared first (a
    // `memcmp`, where the check below costs about 12 instructions a byte).
    let remembered = || {
        LAST_VALID
            .try_with(|last| *last.borrow() == *subject)
            .unwrap_or(false)
    };
    if !subject.is_empty() && remembered() {
        return Ok(());
    }
    validate_afresh(subject)
}

/// [`validate`] for a subject other than the last one found valid.
fn validate_afresh(subject: &str) -> Result<()> {
    // The common valid case takes one pass over the bytes; anything else
    // goes the slow way to name the exact fault.
    if is_plain_subject(subject.as_bytes()) {
        // Not remembered while the thread's locals are being torn down.
        let _ = LAST_VALID.try_with(|last| {
            let mut last = last.borrow_mut();
            last.clear();
            last.push_str(subject);
        });
        return Ok(());
    }
    check_shape(subject)?;
    for token in subject.split('.') {
        if token == WILDCARD_ONE || token == WILDCARD_TAIL {
            return Err(invalid(
                subject,
                "wildcards are only allowed when subscribing",
            ));
        }
        check_token(subject, token)?;
    }
    Ok(())
}

/// Checks a subscription pattern: a subject that may contain `*` and a final `>`.
///
/// ```
/// assert!(switchboard::subject::validate_pattern("orders.*.created").is_ok());
/// assert!(switchboard::subject::validate_pattern("orders.>").is_ok());
/// assert!(switchboard::subject::validate_pattern("orders.>.x").is_err());
/// ```
pub fn validate_pattern(pattern: &str) -> Result<()> {
    check_shape(pattern)?;
    let mut tokens = pattern.split('.').peekable();
    while let Some(token) = tokens.next() {
        match token {
            WILDCARD_ONE => {}
            WILDCARD_TAIL if tokens.peek().is_none() => {}
            WILDCARD_TAIL => return Err(invalid(pattern, "`>` may only be the last token")),
            _ => check_token(pattern, token)?,
        }
    }
    Ok(())
}

/// Checks a queue group name: one token (letters, digits, `-`, `_`).
pub fn validate_group(group: &str) -> Result<()> {
    if group.is_empty() || group.len() > MAX_GROUP_LEN || !group.bytes().all(is_token_byte) {
        return Err(invalid(
            group,
            format!("a queue group is 1 to {MAX_GROUP_LEN} letters, digits, `-` or `_`"),
        ));
    }
    Ok(())
}

/// Whether a pattern contains a wildcard token.
pub fn is_pattern(subject: &str) -> bool {
    subject
        .split('.')
        .any(|token| token == WILDCARD_ONE || token == WILDCARD_TAIL)
}

/// Whether a concrete subject matches a (valid) subscription pattern.
///
/// ```
/// use switchboard::subject::matches;
/// assert!(matches("orders.*", "orders.created"));
/// assert!(matches("orders.>", "orders.eu.created"));
/// assert!(!matches("orders.*", "orders.eu.created"));
/// ```
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for pattern_token in pattern.split('.') {
        match (pattern_token, subject_tokens.next()) {
            (WILDCARD_TAIL, Some(_)) => return true,
            (WILDCARD_ONE, Some(_)) => {}
            (literal, Some(token)) if literal == token => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// Whether every subject matched by `inner` is also matched by `outer`
/// (both valid patterns; a concrete subject is a pattern that matches itself).
///
/// ```
/// use switchboard::subject::covers;
/// assert!(covers("orders.>", "orders.*.created"));
/// assert!(covers("orders.*", "orders.eu"));
/// assert!(!covers("orders.*", "orders.>"));
/// ```
pub fn covers(outer: &str, inner: &str) -> bool {
    let mut inner_tokens = inner.split('.');
    for outer_token in outer.split('.') {
        match (outer_token, inner_tokens.next()) {
            (WILDCARD_TAIL, Some(_)) => return true,
            (_, Some(WILDCARD_TAIL)) | (_, None) => return false,
            (WILDCARD_ONE, Some(_)) => {}
            (literal, Some(token)) if literal == token => {}
            _ => return false,
        }
    }
    inner_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass check agrees with the token-by-token one on every
    /// subject of up to four bytes from an alphabet of each kind of byte.
    #[test]
    fn the_fast_check_agrees_with_the_slow_one() {
        let alphabet = ["a", "Z", "9", "-", "_", ".", "*", ">", " ", "é"];
        let mut subjects = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = subjects
                .iter()
                .flat_map(|prefix| alphabet.iter().map(move |byte| format!("{prefix}{byte}")))
                .collect();
            subjects.extend(longer);
        }
        subjects.sort();
        subjects.dedup();
        for subject in &subjects {
            let slow = check_shape(subject).is_ok()
                && subject
                    .split('.')
                    .all(|token| check_token(subject, token).is_ok());
            assert_eq!(is_plain_subject(subject.as_bytes()), slow, "{subject:?}");
        }
    }

    #[test]
    fn the_remembered_subject_lets_nothing_else_through() {
        validate("orders.created").unwrap();
        validate("orders.created").unwrap();
        for bad in [
            "",
            "orders.",
            "orders..created",
            "orders.*",
            "orders.created ",
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        validate("orders.created").unwrap();
    }

    #[test]
    fn accepts_portable_subjects() {
        for ok in [
            "a",
            "orders.created",
            "a-b_c.D9",
            &"x".repeat(MAX_SUBJECT_LEN),
        ] {
            validate(ok).unwrap();
            validate_pattern(ok).unwrap();
        }
    }

    #[test]
    fn rejects_bad_subjects() {
        let too_long = "x".repeat(MAX_SUBJECT_LEN + 1);
        for bad in [
            "", ".", "a.", ".a", "a..b", "a b", "a/b", "ä", "a\nb", "a.*", "a.>", &too_long,
        ] {
            let err = validate(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidSubject, "{bad:?}");
        }
        for bad in ["a.>.b", "a.*x", "a.>>", "", "a..*"] {
            assert!(validate_pattern(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_byte_table_agrees_with_the_token_rules() {
        for byte in 0..=255u8 {
            let text = [byte];
            let Ok(text) = std::str::from_utf8(&text) else {
                continue;
            };
            for subject in [
                text.to_owned(),
                format!("a{text}"),
                format!("{text}a"),
                format!("a.{text}"),
                format!("a{text}.b"),
            ] {
                let by_token = check_shape(&subject).is_ok()
                    && subject
                        .split('.')
                        .all(|token| check_token(&subject, token).is_ok());
                assert_eq!(
                    is_plain_subject(subject.as_bytes()),
                    by_token,
                    "{subject:?}"
                );
            }
        }
    }

    #[test]
    fn names_a_non_ascii_character_as_itself() {
        let err = validate("orders.café").unwrap_err().to_string();
        assert!(err.contains("character 'é' (U+00E9)"), "{err}");
    }

    #[test]
    fn wildcard_matching() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(matches("a.*.c", "a.x.c"));
        assert!(!matches("a.*", "a"));
        assert!(matches("a.>", "a.b.c.d"));
        assert!(!matches("a.>", "a"));
        assert!(matches(">", "anything.at.all"));
        assert!(is_pattern("a.*"));
        assert!(!is_pattern("a.b"));
    }

    #[test]
    fn pattern_coverage() {
        assert!(covers("a.b", "a.b"));
        assert!(covers(">", "a.*.c"));
        assert!(covers("a.*.c", "a.x.c"));
        assert!(covers("a.*.c", "a.*.c"));
        assert!(!covers("a.x.c", "a.*.c"));
        assert!(covers("a.>", "a.>"));
        assert!(!covers("a.*", "a.>"));
        assert!(!covers("a.b", "a.b.c"));
        assert!(!covers("a.b.c", "a.b"));
    }

    #[test]
    fn groups() {
        validate_group("workers-1").unwrap();
        assert!(validate_group("a.b").is_err());
        assert!(validate_group("").is_err());
        assert!(validate_group("*").is_err());
    }
}
