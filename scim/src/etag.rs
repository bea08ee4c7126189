//! Weak entity tags derived from a resource's version (RFC 7644 §3.14), and `If-Match` /
//! `If-None-Match` evaluation.

/// The ETag of a resource version: `W/"3"`.
pub fn format(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// Whether an `If-Match` / `If-None-Match` header value matches `version`.
///
/// The header is a comma-separated list of entity tags or `*`; weak and strong forms compare equal
/// (RFC 7232 weak comparison), since scimd's tags are all weak. A tag that is not one of ours never matches.
pub fn matches(header: &str, version: u64) -> bool {
    header.split(',').map(str::trim).any(|tag| {
        if tag == "*" {
            return true;
        }
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        let tag = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(tag);
        tag.parse::<u64>() == Ok(version)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_strong_and_bare_forms_match() {
        assert!(matches("W/\"3\"", 3));
        assert!(matches("\"3\"", 3));
        assert!(matches("3", 3));
        assert!(matches("W/\"1\", W/\"3\"", 3));
        assert!(matches("*", 9));
    }

    #[test]
    fn other_versions_and_garbage_do_not_match() {
        assert!(!matches("W/\"2\"", 3));
        assert!(!matches("W/\"abc\"", 3));
        assert!(!matches("", 3));
    }
}
