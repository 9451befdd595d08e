//! MQTT topic names and filters (MQTT 3.1.1 section 4.7, MQTT 5.0 section 4.7).
//!
//! Topics are split into levels by `/`; empty levels are allowed (`a//b`, `/a`, `a/`).
//! Comparison is exact and case-sensitive. A filter whose first level is a wildcard never
//! matches a topic starting with `$`.

/// Longest topic name or filter, in bytes (an MQTT UTF-8 string carries a 16-bit length).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Longest client ID, in bytes.
pub const MAX_CLIENT_ID: usize = 255;

/// `true` for a valid client ID: 1 to [`MAX_CLIENT_ID`] of `[A-Za-z0-9._:@-]`. Such an ID is
/// one topic level that no wildcard, separator or `$` prefix can widen, so the ACL may splice
/// it into topics; CONNECT refuses any other ID before looking at credentials.
pub fn valid_client_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLIENT_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b))
}

/// The plain filter of an MQTT 5 shared subscription (`$share/GROUP/FILTER` -> `FILTER`); any
/// other filter as it is. The ACL decides on plain filters, so every door strips the share
/// prefix this way before asking.
pub fn plain_filter(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, plain)| plain)
}

/// `true` for a valid PUBLISH topic name: non-empty, at most [`MAX_TOPIC_LEN`] bytes, without
/// wildcards (`+`, `#`) or NUL.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && !topic.bytes().any(|b| matches!(b, b'+' | b'#' | b'\0'))
}

/// `true` for a valid SUBSCRIBE topic filter: non-empty, at most [`MAX_TOPIC_LEN`] bytes,
/// without NUL; `+` only as a whole level; `#` only as the whole last level.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        match level {
            "+" => {}
            "#" => return levels.peek().is_none(),
            _ if level.contains(['+', '#']) => return false,
            _ => {}
        }
    }
    true
}

/// `true` when `filter` matches `topic`. `false` when either is invalid.
///
/// `#` also matches the parent level (`a/#` matches `a`); `+` matches exactly one level,
/// possibly empty; a filter starting with a wildcard does not match a `$` topic.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    // A topic name is a filter without wildcards, and "the topic is within the filter" is
    // exactly "the filter matches the topic".
    valid_topic_filter(filter)
        && valid_topic_name(topic)
        && within_levels(topic.split('/'), filter.split('/'))
}

/// `true` when every topic matched by `filter` is also matched by `scope`, i.e. `filter` is
/// `scope` or narrower. `false` when either is invalid.
///
/// Examples: `a/+` and `a` are within `a/#`; `a/#` is not within `a/+`; `$SYS/#` is not within
/// `#` (which never matches `$` topics); `+/x` is within `#`.
pub fn filter_is_within(filter: &str, scope: &str) -> bool {
    valid_topic_filter(filter)
        && valid_topic_filter(scope)
        && within_levels(filter.split('/'), scope.split('/'))
}

/// Containment on levels of valid filters (a valid topic name is a valid filter). Allocates
/// nothing, so callers can pass a scope built from parts (`["$EDC", account, cid, "#"]`).
pub(crate) fn within_levels<'f, 's>(
    mut filter: impl Iterator<Item = &'f str>,
    mut scope: impl Iterator<Item = &'s str>,
) -> bool {
    let mut first = true;
    // Whether the filter levels consumed so far name no valid topic: none at all, or a single
    // empty level (the empty string). Then a `#` there cannot match its parent level.
    let mut no_parent_topic = true;
    loop {
        match (filter.next(), scope.next()) {
            // `#` in the scope matches whatever follows, including nothing (the parent
            // level), except `$` topics when it is the first level.
            (f, Some("#")) => return !(first && f.is_some_and(|f| f.starts_with('$'))),
            (None, None) => return true,
            // One side needs more levels than the other allows.
            (None, Some(_)) => return false,
            (Some(_), None) => return false,
            (Some("#"), Some(s)) => {
                // The filter's `#` matches topics of any depth from here on, and the parent
                // level, which only a scope `#` covers. Except when the parent is not a valid
                // topic: then the filter's `#` is the same as `+/#`.
                return no_parent_topic
                    && s == "+"
                    && scope.next() == Some("#")
                    && scope.next().is_none();
            }
            (Some(f), Some("+")) => {
                if first && f.starts_with('$') {
                    return false;
                }
                no_parent_topic = first && f.is_empty();
            }
            // A literal scope level needs the same literal (a `+` would match others too).
            (Some(f), Some(s)) => {
                if f != s {
                    return false;
                }
                no_parent_topic = first && f.is_empty();
            }
        }
        first = false;
    }
}
