//! `sb-deliver`: which local subscribers of the receiving service an event
//! is for, chosen by the publisher from its directory of peers.

/// The header naming the local subscribers an event is for (set by
/// switchboard publishers): `plain` and `GROUP@PATTERN` tokens separated by
/// spaces. Absent: all of them.
pub const DELIVER: &str = "sb-deliver";

/// Parses `sb-deliver` into (plain, [(pattern, group)]).
pub fn parse_deliver(value: &str) -> (bool, Vec<(String, String)>) {
    let mut plain = false;
    let mut groups = Vec::new();
    for token in value.split_whitespace() {
        match token.split_once('@') {
            Some((group, pattern)) => groups.push((pattern.to_owned(), group.to_owned())),
            None if token == "plain" => plain = true,
            None => {}
        }
    }
    (plain, groups)
}

/// Formats (plain, [(pattern, group)]) as an `sb-deliver` value.
pub fn format_deliver(plain: bool, groups: &[(String, String)]) -> String {
    let mut tokens: Vec<String> = Vec::with_capacity(groups.len() + 1);
    if plain {
        tokens.push("plain".into());
    }
    tokens.extend(
        groups
            .iter()
            .map(|(pattern, group)| format!("{group}@{pattern}")),
    );
    tokens.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_round_trip() {
        let groups = vec![("orders.*".to_owned(), "billing".to_owned())];
        let value = format_deliver(true, &groups);
        assert_eq!(value, "plain billing@orders.*");
        assert_eq!(parse_deliver(&value), (true, groups));
        assert_eq!(parse_deliver(""), (false, vec![]));
    }
}
