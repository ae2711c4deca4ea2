//! Times as the ledger writes and reads them: RFC 3339 UTC text with
//! microseconds in every internal event and in `recorded_at`, and
//! microseconds since the epoch where the fold orders snapshots. A leaf
//! module: the ledger, the fold and the reconciler all read and write times,
//! and none should import another for it.

use chrono::{DateTime, Utc};

/// RFC 3339 UTC with microseconds, as every internal event and the ledger's
/// `recorded_at` write times: fixed width, so the text sorts as the time.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// [`rfc3339`] of the wall clock now.
pub fn now_rfc3339() -> String {
    rfc3339(Utc::now())
}

/// Reads a time written by [`rfc3339`] (or any RFC 3339 time, with any
/// offset).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.with_timezone(&Utc))
}

/// Microseconds since the epoch of an ISO-8601 timestamp with offset, as
/// the fold orders snapshots by it; `None` when it cannot be read.
pub fn instant(text: &str) -> Option<i64> {
    parse_time(text).map(|t| t.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_times_read_back_to_the_same_instant() {
        let t = parse_time("2026-11-30T10:00:00.123456+02:00").unwrap();
        assert_eq!(rfc3339(t), "2026-11-30T08:00:00.123456Z");
        assert_eq!(parse_time(&rfc3339(t)), Some(t));
        assert_eq!(instant("2026-11-30T08:00:00.123456Z"), Some(t.timestamp_micros()));
        assert_eq!(instant("yesterday"), None);
    }
}
