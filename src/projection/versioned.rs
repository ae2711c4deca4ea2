//! Values stamped with the snapshot that carried them, and the two merges
//! the fold uses on them: newest wins, and forward only. Only (date, seq)
//! decide which snapshot is newer, never the values.

use serde::{Deserialize, Serialize};

/// A value with the snapshot it came from, for newest-wins merges.
///
/// Stored as `[value, at, seq]` rather than an object: a state holds a dozen
/// of them, and the field names were a fifth of every stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    /// Microseconds since the epoch of the snapshot's date (its
    /// `updated_at`, else its claim time or the envelope's `timestamp`);
    /// `i64::MIN` when it could not be read.
    pub at: i64,
    /// The ledger seq of the event that carried it: of two snapshots of the
    /// same date, the one appended later is the newer.
    pub seq: u64,
}

impl<T: Serialize> Serialize for Versioned<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.value, self.at, self.seq).serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Versioned<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (value, at, seq) = <(T, i64, u64)>::deserialize(deserializer)?;
        Ok(Versioned { value, at, seq })
    }
}

impl<T> Versioned<T> {
    /// Whether a snapshot dated `at`, appended at `seq`, is newer than the
    /// one this value came from. Only (date, seq) decide, never the values:
    /// a larger amount or a "later-sounding" status does not win.
    pub(super) fn is_older_than(&self, at: i64, seq: u64) -> bool {
        (at, seq) > (self.at, self.seq)
    }
}

/// Keeps the value of the newest snapshot that carried one.
pub(super) fn newest<T>(cur: &mut Option<Versioned<T>>, value: Option<T>, at: i64, seq: u64) {
    let Some(value) = value else { return };
    if cur.as_ref().is_none_or(|c| c.is_older_than(at, seq)) {
        *cur = Some(Versioned { value, at, seq });
    }
}

/// Forward-only merge: a terminal value beats a non-terminal one whatever
/// their dates, and a non-terminal one never replaces a terminal one; among
/// terminal values, and among non-terminal ones, the newest snapshot wins.
/// Every terminal value ever reported is kept in `terminal_seen` (only
/// while there are two or more, since one is the current value): no real
/// invitation goes from one terminal value to another, so two are a
/// conflict whichever wins.
pub(super) fn forward<T: Clone + Ord>(
    cur: &mut Option<Versioned<T>>,
    value: Option<T>,
    at: i64,
    seq: u64,
    terminal: impl Fn(&T) -> bool,
    terminal_seen: &mut Vec<T>,
) {
    let Some(value) = value else { return };
    if terminal(&value) {
        if terminal_seen.is_empty() {
            terminal_seen.extend(cur.as_ref().map(|c| c.value.clone()).filter(|v| terminal(v)));
        }
        if let Err(i) = terminal_seen.binary_search(&value) {
            terminal_seen.insert(i, value.clone());
        }
        if terminal_seen.len() < 2 {
            terminal_seen.clear();
        }
    }
    let replace = match cur {
        None => true,
        Some(c) => match (terminal(&value), terminal(&c.value)) {
            (true, false) => true,
            (false, true) => false,
            _ => c.is_older_than(at, seq),
        },
    };
    if replace {
        *cur = Some(Versioned { value, at, seq });
    }
}
