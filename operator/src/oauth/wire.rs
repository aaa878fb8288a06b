//! Pure parsers for what an AS sends back besides success bodies: RFC 6749 §5.2 error JSON,
//! Ozone/OBIE `{"Errors":[{Code,Message,...}]}`, `Retry-After`, and the sanitiser that makes a
//! server-chosen string safe to put in an error, a condition or a log. No I/O.
//!
//! Response bodies never reach an error as such: only the parsed `error` / `error_description`
//! (or `Code` / `Message`), capped at [`MAX_FIELD_CHARS`] characters with control characters
//! removed.

use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;

/// Longest `error` / `error_description` kept from a response, in characters.
pub const MAX_FIELD_CHARS: usize = 256;

/// The parsed, sanitised error fields of a non-success response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// RFC 6749 `error` code, or the first `Errors[].Code` of a hub response.
    pub error: Option<String>,
    /// RFC 6749 `error_description`, or the first `Errors[].Message` of a hub response.
    pub description: Option<String>,
}

impl ErrorBody {
    /// Parses a response body leniently: RFC 6749 JSON, then hub `Errors[]`, else empty.
    pub fn parse(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Rfc6749 {
            error: Option<serde_json::Value>,
            error_description: Option<serde_json::Value>,
            #[serde(rename = "Errors")]
            errors: Option<Vec<HubErrorItem>>,
            #[serde(rename = "Code")]
            code: Option<serde_json::Value>,
            #[serde(rename = "Message")]
            message: Option<serde_json::Value>,
        }
        #[derive(Deserialize)]
        struct HubErrorItem {
            #[serde(rename = "Code")]
            code: Option<serde_json::Value>,
            #[serde(rename = "Message")]
            message: Option<serde_json::Value>,
        }
        let Ok(parsed) = serde_json::from_slice::<Rfc6749>(body) else {
            return Self::default();
        };
        let text = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => sanitize(&s),
            _ => None,
        };
        if parsed.error.is_some() {
            return Self {
                error: text(parsed.error),
                description: text(parsed.error_description),
            };
        }
        if let Some(first) = parsed.errors.and_then(|e| e.into_iter().next()) {
            return Self {
                error: text(first.code),
                description: text(first.message),
            };
        }
        Self {
            error: text(parsed.code),
            description: text(parsed.message),
        }
    }

    /// True when the OAuth `error` code equals `code`.
    pub fn is(&self, code: &str) -> bool {
        self.error.as_deref() == Some(code)
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.error, &self.description) {
            (Some(e), Some(d)) => write!(f, "{e}: {d}"),
            (Some(e), None) => f.write_str(e),
            (None, Some(d)) => f.write_str(d),
            (None, None) => f.write_str("no error details"),
        }
    }
}

/// Removes the query and fragment of every `http://`/`https://` URL in `text` (up to the next
/// whitespace or quote): they can carry codes, tokens or signatures that no error message,
/// condition or log line may repeat (issue 13, item 8). Scheme, host and path stay.
pub fn strip_url_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_url(rest) {
        out.push_str(&rest[..at]);
        let url = &rest[at..];
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(url.len());
        let cut = url[..end].find(['?', '#']).unwrap_or(end);
        out.push_str(&url[..cut]);
        rest = &url[end..];
    }
    out.push_str(rest);
    out
}

/// The byte offset of the first `http://` or `https://` in `text`, ASCII case-insensitive.
fn find_url(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    [lower.find("http://"), lower.find("https://")]
        .into_iter()
        .flatten()
        .min()
}

/// Strips control characters and URL queries/fragments ([`strip_url_queries`]), trims, and caps
/// at [`MAX_FIELD_CHARS`] characters (an ellipsis marks a cut). Returns `None` for a string that
/// is empty afterwards.
pub fn sanitize(raw: &str) -> Option<String> {
    let cleaned: String = strip_url_queries(raw)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        return None;
    }
    let mut out: String = trimmed.chars().take(MAX_FIELD_CHARS).collect();
    if trimmed.chars().count() > MAX_FIELD_CHARS {
        out.push('…');
    }
    Some(out)
}

/// The longest `Retry-After` honoured: 60 s, the reconciler's backoff ceiling. A token is
/// refreshed a third of its lifetime before expiry by default (rotation/tokens.rs), so for any
/// token living 3 minutes or more one honoured wait still leaves time to retry before it
/// expires; an AS (or whoever answers in its name) asking for hours would otherwise stop
/// every token refresh of its clients for that long (issue 13, item 8; docs/security.md).
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date (relative to `now`; a date in
/// the past gives zero). Garbage gives `None`. Capped at [`RETRY_AFTER_CAP`].
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    const CAP: Duration = RETRY_AFTER_CAP;
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(CAP));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let delta = at.as_second().saturating_sub(now.as_second());
    Some(Duration::from_secs(u64::try_from(delta).unwrap_or(0)).min(CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc6749_error_json() {
        let body =
            br#"{"error":"invalid_client","error_description":"client authentication failed"}"#;
        let parsed = ErrorBody::parse(body);
        assert!(parsed.is("invalid_client"));
        assert_eq!(
            parsed.description.as_deref(),
            Some("client authentication failed")
        );
    }

    #[test]
    fn parses_first_hub_error_code_and_message() {
        let body = br#"{"Errors":[{"Code":"JWS.InvalidSignature","Message":"bad sig","Path":"x","Url":"y"},{"Code":"Other"}]}"#;
        let parsed = ErrorBody::parse(body);
        assert_eq!(parsed.error.as_deref(), Some("JWS.InvalidSignature"));
        assert_eq!(parsed.description.as_deref(), Some("bad sig"));
    }

    #[test]
    fn non_json_body_gives_no_details() {
        assert_eq!(ErrorBody::parse(b"<html>oops</html>"), ErrorBody::default());
        assert_eq!(ErrorBody::parse(b"").to_string(), "no error details");
    }

    #[test]
    fn sanitize_strips_control_characters_and_caps_length() {
        assert_eq!(
            sanitize("bad\r\nline\u{1b}[31m").as_deref(),
            Some("bad  line [31m")
        );
        let long = "x".repeat(1000);
        let capped = sanitize(&long).unwrap_or_default();
        assert_eq!(capped.chars().count(), MAX_FIELD_CHARS + 1);
        assert!(capped.ends_with('…'));
        assert_eq!(sanitize(" \n\t "), None);
    }

    #[test]
    fn urls_in_text_lose_their_query_and_fragment() {
        assert_eq!(
            strip_url_queries("see https://as.example/cb?code=SECRET&state=x#frag now"),
            "see https://as.example/cb now"
        );
        assert_eq!(
            strip_url_queries("a HTTP://h/p#t and \"http://i/q?x=1\", end?"),
            "a HTTP://h/p and \"http://i/q\", end?"
        );
        assert_eq!(strip_url_queries("no url? none#here"), "no url? none#here");
        assert_eq!(
            strip_url_queries("https://é.example/ü?k=ß"),
            "https://é.example/ü"
        );
    }

    #[test]
    fn error_descriptions_carry_no_url_query() {
        let body = br#"{"error":"invalid_request","error_description":"redirect https://as/cb?code=SECRET not registered"}"#;
        let parsed = ErrorBody::parse(body);
        assert_eq!(
            parsed.description.as_deref(),
            Some("redirect https://as/cb not registered")
        );
        assert!(!parsed.to_string().contains("SECRET"));
    }

    #[test]
    fn error_description_of_non_string_type_is_dropped() {
        let parsed =
            ErrorBody::parse(br#"{"error":"invalid_request","error_description":{"a":1}}"#);
        assert!(parsed.is("invalid_request"));
        assert_eq!(parsed.description, None);
    }

    #[test]
    fn retry_after_accepts_delta_seconds() {
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 45 ", now),
            Some(Duration::from_secs(45))
        );
    }

    #[test]
    fn retry_after_accepts_http_date_relative_to_now() {
        let now: Timestamp = "2026-01-30T10:00:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(
            parse_retry_after("Fri, 30 Jan 2026 10:00:45 GMT", now),
            Some(Duration::from_secs(45))
        );
        assert_eq!(
            parse_retry_after("Fri, 30 Jan 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_rejects_garbage_and_caps_huge_values() {
        assert_eq!(parse_retry_after("soon", Timestamp::UNIX_EPOCH), None);
        assert_eq!(parse_retry_after("-5", Timestamp::UNIX_EPOCH), None);
        assert_eq!(
            parse_retry_after("99999999", Timestamp::UNIX_EPOCH),
            Some(RETRY_AFTER_CAP)
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", Timestamp::UNIX_EPOCH),
            None
        );
    }

    #[test]
    fn retry_after_is_capped_below_a_token_refresh_window() {
        // An hour's wait (or a date a day ahead) would outlive every OFM access token.
        let now: Timestamp = "2026-01-30T10:00:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("3600", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sat, 31 Jan 2026 10:00:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("60", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("59", now), Some(Duration::from_secs(59)));
        // A third of a 3-minute token's lifetime: the default refresh window still fits one wait.
        assert!(RETRY_AFTER_CAP <= Duration::from_secs(180) / 3);
    }
}
