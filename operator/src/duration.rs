//! Kubernetes-style duration strings (`90d`, `15m`, `1h30m`, `500ms`), shared by every CRD field.
//!
//! One parser serves every field, and one schema rule (a CEL `matches`) refuses a malformed value
//! at apply time with a message saying what to write. The grammar is Go's `time.ParseDuration`
//! (units `h`, `m`, `s`, `ms`, non-negative, integers) with an optional leading whole-day
//! component `<n>d`, so that CEL can compare two durations: [`CEL_SECONDS`] turns one into seconds
//! with CEL's own `duration()` after splitting off the days. No I/O.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration as StdDuration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The regular expression a duration string must match (also used by the CRD schema rule).
///
/// Every component has at most [`MAX_DIGITS`] digits, so that with [`MAX_LEN`] the largest
/// schema-valid value (`99999d` plus five `99999h`, about 330 years) neither overflows this
/// parser nor CEL's `duration()` (64-bit nanoseconds, about 292 years, applied to the part after
/// the days) nor timestamp arithmetic: an object the API server accepts can always be decoded.
pub const PATTERN: &str = r"^([0-9]{1,5}d)?([0-9]{1,5}(h|ms|m|s))*$";

/// The most digits in one component of a duration string (see [`PATTERN`]).
pub const MAX_DIGITS: usize = 5;

/// The largest duration this parser returns: 200,000 days (about 547 years), above the largest
/// schema-valid value. A longer value (only an object stored under an older, looser schema can
/// carry one) is clamped to it rather than refused: refusing it would make the object, and with
/// it the whole LIST page the watcher decodes, undecodable (issue 13, item 1).
pub const MAX: Duration = Duration::from_days(200_000);

/// The longest duration string accepted (bounds the cost of CEL rules over durations).
pub const MAX_LEN: usize = 32;

/// Message shown by the apiserver when a duration string is malformed.
pub const FORMAT_MESSAGE: &str = "must be a duration like 90d, 1h30m, 15m, 30s or 500ms \
     (units d, h, m, s, ms; days first; at most 5 digits per unit)";

/// A CEL expression template giving the whole seconds of the duration field `{f}` (a string
/// matching [`PATTERN`]). Replace `{f}` with the field path, e.g. `self.renewBefore`.
pub const CEL_SECONDS: &str = "(({f}.contains('d') ? int({f}.split('d')[0]) * 86400 : 0) + \
     (({f}.contains('d') ? {f}.split('d')[1] : {f}) == '' ? 0 : \
     duration({f}.contains('d') ? {f}.split('d')[1] : {f}).getSeconds()))";

/// CEL expression for the seconds of the duration at `field` (see [`CEL_SECONDS`]).
pub fn cel_seconds(field: &str) -> String {
    CEL_SECONDS.replace("{f}", field)
}

/// A non-negative duration written as a Kubernetes-style string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(StdDuration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    /// Empty input.
    #[error("empty duration: {FORMAT_MESSAGE}")]
    Empty,
    /// Input longer than [`MAX_LEN`].
    #[error("duration longer than {MAX_LEN} characters")]
    TooLong,
    /// Anything else that does not follow the grammar.
    #[error("invalid duration {0:?}: {FORMAT_MESSAGE}")]
    Invalid(String),
}

impl Duration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(StdDuration::from_secs(secs))
    }

    /// A duration of `mins` minutes.
    pub const fn from_mins(mins: u64) -> Self {
        Self(StdDuration::from_secs(mins * 60))
    }

    /// A duration of `days` days.
    pub const fn from_days(days: u64) -> Self {
        Self(StdDuration::from_secs(days * 86_400))
    }

    /// The standard-library duration.
    pub const fn std(self) -> StdDuration {
        self.0
    }

    /// As a signed duration for timestamp arithmetic.
    pub fn signed(self) -> jiff::SignedDuration {
        jiff::SignedDuration::try_from(self.0).unwrap_or(jiff::SignedDuration::MAX)
    }

    /// Whole seconds.
    pub const fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl From<StdDuration> for Duration {
    fn from(d: StdDuration) -> Self {
        Self(d)
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ParseDurationError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(ParseDurationError::TooLong);
        }
        let invalid = || ParseDurationError::Invalid(s.to_owned());
        let max_ms = MAX.0.as_millis() as u64;
        let mut total_ms: u64 = 0;
        let mut rest = s;
        let mut first = true;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(invalid());
            }
            // Saturating: more than u64 digits clamp like any other too-large value.
            let n: u64 = rest[..digits].parse().unwrap_or(u64::MAX);
            rest = &rest[digits..];
            // Like Go's time.ParseDuration, h/m/s/ms may repeat and come in any order; a day
            // component may only lead (so that CEL can split it off).
            let (unit_ms, len) = if rest.starts_with("ms") {
                (1, 2)
            } else if rest.starts_with('d') && first {
                (86_400_000, 1)
            } else if rest.starts_with('h') {
                (3_600_000, 1)
            } else if rest.starts_with('m') {
                (60_000, 1)
            } else if rest.starts_with('s') {
                (1_000, 1)
            } else {
                return Err(invalid());
            };
            first = false;
            rest = &rest[len..];
            total_ms = total_ms.saturating_add(n.saturating_mul(unit_ms));
        }
        Ok(Self(StdDuration::from_millis(total_ms.min(max_ms))))
    }
}

impl fmt::Display for Duration {
    /// Canonical form: days, hours, minutes, seconds, milliseconds; `0s` for zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000u128),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(deserializer)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": MAX_LEN,
            "x-kubernetes-validations": [{
                "rule": format!("self.matches('{PATTERN}') && self != ''"),
                "message": FORMAT_MESSAGE,
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<u64, ParseDurationError> {
        s.parse::<Duration>().map(|d| d.0.as_millis() as u64)
    }

    #[test]
    fn parses_days_hours_minutes_seconds_and_millis() {
        assert_eq!(d("90d"), Ok(90 * 86_400_000));
        assert_eq!(d("15m"), Ok(900_000));
        assert_eq!(d("1h30m"), Ok(5_400_000));
        assert_eq!(d("1d12h"), Ok(129_600_000));
        assert_eq!(d("500ms"), Ok(500));
        assert_eq!(d("1m30s250ms"), Ok(90_250));
        assert_eq!(d("0s"), Ok(0));
    }

    #[test]
    fn refuses_malformed_durations() {
        for bad in [
            "", "5", "m", "-5m", "1.5h", "5x", "1h1d", "1d2d", " 5m", "5m ", "5M",
        ] {
            assert!(d(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(d(&"9".repeat(40)), Err(ParseDurationError::TooLong));
    }

    #[test]
    fn clamps_values_beyond_the_maximum_instead_of_refusing_them() {
        // Accepted by the schema before component digits were bounded; an object carrying one
        // must still decode (issue 13, item 1).
        let max = MAX.0.as_millis() as u64;
        assert_eq!(d("99999999999999999999s"), Ok(max));
        assert_eq!(d("99999999999999999999d"), Ok(max));
        assert_eq!(d("9999999999999999h9999999999ms"), Ok(max));
        assert_eq!(d("200000d"), Ok(max));
        assert_eq!(d("199999d"), Ok(199_999 * 86_400_000));
    }

    /// What the schema lets through: the CEL pattern (without its anchors, which proptest's
    /// generator does not take), not empty, at most [`MAX_LEN`] characters.
    fn schema_valid() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let unanchored = PATTERN.trim_start_matches('^').trim_end_matches('$');
        proptest::string::string_regex(unanchored)
            .unwrap()
            .prop_filter("schema: non-empty, maxLength", |s| {
                !s.is_empty() && s.len() <= MAX_LEN
            })
    }

    proptest::proptest! {
        #[test]
        fn every_schema_valid_duration_parses_below_the_maximum(s in schema_valid()) {
            let parsed = s.parse::<Duration>();
            proptest::prop_assert!(parsed.is_ok(), "{s:?}: {parsed:?}");
            let parsed = parsed.unwrap();
            proptest::prop_assert!(parsed < MAX, "{s:?} reached the clamp");
            // Below CEL's duration() range for the part after the days (64-bit nanoseconds).
            let after_days = s.split_once('d').map_or(s.as_str(), |(_, r)| r);
            if !after_days.is_empty() {
                let rest: Duration = after_days.parse().unwrap();
                proptest::prop_assert!(rest.std().as_nanos() < i64::MAX as u128, "{s:?}");
            }
            // And timestamp arithmetic from now cannot overflow.
            proptest::prop_assert!(jiff::Timestamp::now().checked_add(parsed.signed()).is_ok());
        }

        #[test]
        fn the_parser_never_panics_on_any_string(s in "\\PC{0,40}") {
            let _ = s.parse::<Duration>();
        }
    }

    #[test]
    fn the_pattern_refuses_components_longer_than_the_digit_bound() {
        // CEL's matches() is RE2; the regex crate has the same syntax and semantics here.
        let re = regex::Regex::new(PATTERN).unwrap();
        for ok in ["99999d", "99999h99999m", "1d1h1m1s1ms", "500ms"] {
            assert!(re.is_match(ok), "{ok}");
        }
        for bad in ["100000s", "999999d", "99999999999999999999s", "1h1d"] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn displays_in_canonical_form_and_round_trips() {
        for (input, canonical) in [
            ("90d", "90d"),
            ("1h30m", "1h30m"),
            ("36h", "1d12h"),
            ("90s", "1m30s"),
            ("0m", "0s"),
        ] {
            let parsed: Duration = input.parse().unwrap();
            assert_eq!(parsed.to_string(), canonical);
            assert_eq!(canonical.parse::<Duration>().unwrap(), parsed);
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let v: Duration = serde_json::from_str("\"15m\"").unwrap();
        assert_eq!(v, Duration::from_mins(15));
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"15m\"");
        let err = serde_json::from_str::<Duration>("\"15 minutes\"").unwrap_err();
        assert!(err.to_string().contains("must be a duration like"));
    }

    #[test]
    fn accepts_units_in_any_order_like_go() {
        assert_eq!(d("30m1h"), Ok(5_400_000));
        assert_eq!(d("1m1m"), Ok(120_000));
    }
}
