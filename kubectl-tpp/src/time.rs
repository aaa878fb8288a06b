//! Instants as `kubectl tpp` prints them: whole-second RFC 3339 UTC with a relative hint
//! (`in 5m`, `3d ago`). Pure.

use jiff::Timestamp;

/// `2026-12-03T09:00:00Z`.
pub fn rfc3339(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// `in 48s`, `5m ago`, `now`: the largest unit that keeps at least two of it (s, m, h, d).
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    let secs = t.as_second() - now.as_second();
    let abs = secs.unsigned_abs();
    if abs == 0 {
        return "now".into();
    }
    let span = if abs < 120 {
        format!("{abs}s")
    } else if abs < 120 * 60 {
        format!("{}m", abs / 60)
    } else if abs < 48 * 3600 {
        format!("{}h", abs / 3600)
    } else {
        format!("{}d", abs / 86400)
    };
    if secs > 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// `2026-12-03T09:00:00Z (in 5m)`.
pub fn with_relative(t: Timestamp, now: Timestamp) -> String {
    format!("{} ({})", rfc3339(t), relative(t, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn relative_times_pick_a_readable_unit() {
        let now = t(1_000_000);
        assert_eq!(relative(t(1_000_000), now), "now");
        assert_eq!(relative(t(1_000_048), now), "in 48s");
        assert_eq!(relative(t(1_000_000 - 300), now), "5m ago");
        assert_eq!(relative(t(1_000_000 + 3 * 3600), now), "in 3h");
        assert_eq!(relative(t(1_000_000 - 90 * 86400), now), "90d ago");
    }

    #[test]
    fn instants_print_in_whole_seconds_utc() {
        let ts: Timestamp = "2026-12-03T09:00:00.123456Z".parse().unwrap();
        assert_eq!(rfc3339(ts), "2026-12-03T09:00:00Z");
    }
}
