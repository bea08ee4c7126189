//! The `Prefer` request header (RFC 7240): the two preferences scimd honours, `respond-async`
//! (§4.1) and `wait` (§4.3).

use std::time::Duration;

use poem::http::HeaderMap;

/// What a request's `Prefer` headers ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preferences {
    /// `respond-async`: answer 202 and run the request later (RFC 9967 §3).
    pub respond_async: bool,
    /// `wait=N`: the client would rather wait up to N seconds for a synchronous answer.
    pub wait: Option<Duration>,
}

impl Preferences {
    /// Reads every `Prefer` header: comma-separated preferences, each a token (matched
    /// case-insensitively, §2) with an optional `=value` (quoted or not) and `;` parameters,
    /// which scimd ignores. A preference scimd does not know, or a `wait` that is not a number
    /// of seconds, is ignored (§2: "MUST ignore … not understood"); of a repeated one the first
    /// counts (§2).
    pub fn of(headers: &HeaderMap) -> Preferences {
        let mut out = Preferences::default();
        let mut seen_wait = false;
        let values = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok());
        for preference in values.flat_map(|v| outside_quotes(v, ',')) {
            let pair = outside_quotes(preference, ';').next().unwrap_or_default();
            let (token, value) = match pair.split_once('=') {
                Some((t, v)) => (t.trim(), Some(v.trim().trim_matches('"'))),
                None => (pair.trim(), None),
            };
            if token.eq_ignore_ascii_case("respond-async") {
                out.respond_async = true;
            } else if token.eq_ignore_ascii_case("wait") && !seen_wait {
                seen_wait = true;
                out.wait = value
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs);
            }
        }
        out
    }
}

/// The parts of `value` between the `separator`s that are not inside a quoted-string (RFC 9110
/// §5.6.4, with `\` escapes): a `,` or `;` in a quoted value does not start a preference, so
/// `foo="a, respond-async"` asks for nothing.
fn outside_quotes(value: &str, separator: char) -> impl Iterator<Item = &str> {
    let (mut quoted, mut escaped) = (false, false);
    value.split(move |c: char| {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ => return c == separator && !quoted,
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    fn prefs(values: &[&str]) -> Preferences {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("prefer", HeaderValue::from_str(v).unwrap());
        }
        Preferences::of(&headers)
    }

    #[test]
    fn respond_async_is_matched_case_insensitively_among_others() {
        assert!(prefs(&["Respond-Async"]).respond_async);
        assert!(prefs(&["return=minimal, RESPOND-ASYNC; foo=bar"]).respond_async);
        assert!(prefs(&["return=minimal", "respond-async"]).respond_async);
        assert!(!prefs(&["return=minimal"]).respond_async);
        assert!(!prefs(&["respond-asynchronously"]).respond_async);
    }

    #[test]
    fn separators_inside_a_quoted_value_do_not_start_a_preference() {
        assert!(!prefs(&["foo=\"a, respond-async\""]).respond_async);
        assert!(!prefs(&["foo=\"a;b, respond-async, c\""]).respond_async);
        assert!(!prefs(&["foo=\"a\\\", respond-async\""]).respond_async);
        assert!(prefs(&["foo=\"a, b\", respond-async"]).respond_async);
        assert!(prefs(&["foo=\"a\\\"b\"; x=\";,\", respond-async"]).respond_async);
        assert_eq!(
            prefs(&["handling=\"a,b\", wait=4"]).wait,
            Some(Duration::from_secs(4))
        );
    }

    #[test]
    fn wait_takes_seconds_and_the_first_one_counts() {
        let p = prefs(&["respond-async, wait=10"]);
        assert_eq!(p.wait, Some(Duration::from_secs(10)));
        assert_eq!(prefs(&["Wait = \"5\""]).wait, Some(Duration::from_secs(5)));
        assert_eq!(
            prefs(&["wait=3", "wait=9"]).wait,
            Some(Duration::from_secs(3))
        );
        assert_eq!(prefs(&["wait=soon"]).wait, None);
        assert_eq!(prefs(&["wait=-1"]).wait, None);
    }
}
