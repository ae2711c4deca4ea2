//! The ledger contract, one suite for every store: what
//! `invitation_ledger::ledger::contract::LedgerStore` promises, checked
//! through that trait alone. A store is added by one line at the bottom
//! (`contract_suite!(name, how to open an empty one)`); each check then
//! runs against it unchanged.

use invitation_ledger::ledger::hash::GENESIS;
use invitation_ledger::ledger::{Appended, Expected, LedgerError, LedgerEvent, LedgerStore, NewEvent};
use invitation_ledger::vocab::{EventKey, EventKind, StreamId};

/// A webhook-like event of `stream` under key `k<n>`.
fn event(n: u32, stream: &str) -> NewEvent {
    NewEvent {
        event_key: EventKey::stored(format!("test:k{n}")),
        kind: EventKind::WebhookReceived,
        stream: Some(StreamId::new(stream)),
        body: format!("{{\"n\":{n}}}").into_bytes(),
        signature: None,
        sibling_prefix: None,
    }
}

fn seqs(answers: &[Appended]) -> Vec<(u64, bool)> {
    answers.iter().map(|a| (a.seq, a.duplicate)).collect()
}

fn conflict_of<T: std::fmt::Debug>(r: Result<T, LedgerError>) -> (u64, u64) {
    match r {
        Err(LedgerError::Conflict(c)) => (c.expected, c.actual),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// The checks, each a function of any store.
mod checks {
    use super::*;

    pub async fn an_empty_ledger_has_head_zero_and_nothing_to_read(store: &impl LedgerStore) {
        assert_eq!(store.head().await.unwrap(), (0, GENESIS));
        assert!(store.read_range(0, 10).await.unwrap().is_empty());
        assert!(store.read_stream(&StreamId::new("Inv:a"), 0).await.unwrap().is_empty());
    }

    pub async fn a_key_the_ledger_holds_is_answered_with_its_seq_and_stored_once(store: &impl LedgerStore) {
        // given two events appended
        let first = store.append_all(vec![event(1, "Inv:a"), event(2, "Inv:b")]).await.unwrap();
        assert_eq!(seqs(&first), vec![(1, false), (2, false)]);
        // when one of them comes again beside a new one, in one call
        let again = store.append_all(vec![event(2, "Inv:b"), event(3, "Inv:a")]).await.unwrap();
        // then it is a duplicate of its seq, and only the new one is stored
        assert_eq!(seqs(&again), vec![(2, true), (3, false)]);
        assert_eq!(store.head().await.unwrap().0, 3);
        let stored = store.read_range(0, 10).await.unwrap();
        assert_eq!(stored.len(), 3);
        // and each answer names the hash of the event at its seq: the
        // version an append conditional on it names
        for a in first.iter().chain(&again) {
            assert_eq!(a.hash, stored[a.seq as usize - 1].hash, "seq {}", a.seq);
        }
    }

    pub async fn an_append_on_the_version_the_stream_is_at_is_stored(store: &impl LedgerStore) {
        // given a stream at seq 2 and another stream after it
        store.append_all(vec![event(1, "Inv:a"), event(2, "Inv:a"), event(3, "Inv:b")]).await.unwrap();
        // when an append decided on version 2 comes
        let stored = store.append_if(Expected::new("Inv:a", 2), vec![event(4, "Inv:a")]).await.unwrap();
        // then it is stored: another stream's events are not this one's version
        assert_eq!(seqs(&stored), vec![(4, false)]);
        // and a new stream is at version 0
        let fresh = store.append_if(Expected::new("Inv:new", 0), vec![event(5, "Inv:new")]).await.unwrap();
        assert_eq!(seqs(&fresh), vec![(5, false)]);
    }

    pub async fn an_append_on_a_version_the_stream_moved_past_is_refused_whole(store: &impl LedgerStore) {
        // given a stream that moved from version 1 to 2
        store.append_all(vec![event(1, "Inv:a"), event(2, "Inv:a")]).await.unwrap();
        // when a call of two events decided on version 1 comes
        let refused = store.append_if(Expected::new("Inv:a", 1), vec![event(3, "Inv:a"), event(4, "Inv:a")]).await;
        // then it is refused, saying which version the stream is at, and
        // nothing of it is stored
        assert_eq!(conflict_of(refused), (1, 2));
        assert_eq!(store.head().await.unwrap().0, 2);
        // and a version from the future is refused too
        let ahead = store.append_if(Expected::new("Inv:a", 9), vec![event(5, "Inv:a")]).await;
        assert_eq!(conflict_of(ahead), (9, 2));
    }

    pub async fn an_append_on_the_right_seq_but_another_event_there_is_refused(store: &impl LedgerStore) {
        // given a stream at seq 2, whose last event has a hash the decision knows
        store.append_all(vec![event(1, "Inv:a"), event(2, "Inv:a")]).await.unwrap();
        let held = store.read_stream(&StreamId::new("Inv:a"), 0).await.unwrap().last().unwrap().hash;
        // when a decision names seq 2 with another event's hash (what a
        // ledger restored to an older copy and grown again would hold)
        let other = invitation_ledger::ledger::Hash([7; 32]);
        let refused = store.append_if(Expected::new("Inv:a", 2).with_hash(Some(other)), vec![event(3, "Inv:a")]).await;
        // then it is refused, and one naming the event held is stored
        assert_eq!(conflict_of(refused), (2, 2));
        let stored =
            store.append_if(Expected::new("Inv:a", 2).with_hash(Some(held)), vec![event(3, "Inv:a")]).await.unwrap();
        assert_eq!(seqs(&stored), vec![(3, false)]);
    }

    pub async fn a_decision_appended_again_is_a_duplicate_whatever_the_version(store: &impl LedgerStore) {
        // given a decision recorded on version 1, and the stream moved on
        store.append_all(vec![event(1, "Inv:a")]).await.unwrap();
        store.append_if(Expected::new("Inv:a", 1), vec![event(2, "Inv:a")]).await.unwrap();
        store.append_all(vec![event(3, "Inv:a")]).await.unwrap();
        // when the same decision is appended again (a retried step)
        let again = store.append_if(Expected::new("Inv:a", 1), vec![event(2, "Inv:a")]).await.unwrap();
        // then it is answered with its seq, not refused
        assert_eq!(seqs(&again), vec![(2, true)]);
    }

    pub async fn of_concurrent_appends_on_one_version_exactly_one_is_stored(
        store: &(impl LedgerStore + Clone + 'static),
    ) {
        // given a stream at version 1
        store.append_all(vec![event(1, "Inv:a")]).await.unwrap();
        // when sixteen contradictory decisions on version 1 are appended at once
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..16 {
            let store = store.clone();
            tasks.spawn(async move { store.append_if(Expected::new("Inv:a", 1), vec![event(100 + n, "Inv:a")]).await });
        }
        let results = tasks.join_all().await;
        // then exactly one is stored and every other is refused as a conflict
        let stored = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(stored, 1, "{results:?}");
        for r in results.into_iter().filter(Result::is_err) {
            assert_eq!(conflict_of(r), (1, 2));
        }
        assert_eq!(store.head().await.unwrap().0, 2);
    }

    pub async fn events_are_gapless_in_order_and_chained(store: &impl LedgerStore) {
        // given events appended in several calls
        for n in 0..5 {
            store.append_all(vec![event(2 * n, "Inv:a"), event(2 * n + 1, "Inv:b")]).await.unwrap();
        }
        // then they read back gapless from 1, each chained to the one before
        let all = store.read_range(0, 100).await.unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
        let mut prev = GENESIS;
        for e in &all {
            assert_eq!(e.prev_hash, prev, "seq {}", e.seq);
            assert_eq!(e.chain_hash(&prev), e.hash, "seq {}", e.seq);
            prev = e.hash;
        }
        // and the head is the last of them
        assert_eq!(store.head().await.unwrap(), (10, prev));
    }

    pub async fn ranges_and_streams_read_what_they_name(store: &impl LedgerStore) {
        // given events of two streams, interleaved, and one of no stream
        let mut events: Vec<NewEvent> = (0..9).map(|n| event(n, if n % 3 == 0 { "Inv:a" } else { "Inv:b" })).collect();
        events[4].stream = None;
        store.append_all(events).await.unwrap();
        // then a range is exclusive of `after` and bounded by `limit`
        let page: Vec<u64> = store.read_range(3, 4).await.unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(page, vec![4, 5, 6, 7]);
        // and a stream holds its own events only, in order, after `after`
        let a: Vec<LedgerEvent> = store.read_stream(&StreamId::new("Inv:a"), 0).await.unwrap();
        assert_eq!(a.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 4, 7]);
        let b_after: Vec<u64> =
            store.read_stream(&StreamId::new("Inv:b"), 3).await.unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(b_after, vec![6, 8, 9]);
        // and what was stored reads back byte for byte
        assert_eq!(a[0].body, b"{\"n\":0}");
        assert_eq!(a[0].event_key, "test:k0");
        assert_eq!(a[0].kind(), Some(EventKind::WebhookReceived));
    }
}

/// Instantiates every check for one store: `$open` is an async expression
/// giving `(store, guard)`, the guard keeping what the store needs alive.
macro_rules! contract_suite {
    ($name:ident, $open:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn an_empty_ledger_has_head_zero_and_nothing_to_read() {
                let (store, _guard) = $open.await;
                checks::an_empty_ledger_has_head_zero_and_nothing_to_read(&store).await;
            }

            #[tokio::test]
            async fn a_key_the_ledger_holds_is_answered_with_its_seq_and_stored_once() {
                let (store, _guard) = $open.await;
                checks::a_key_the_ledger_holds_is_answered_with_its_seq_and_stored_once(&store).await;
            }

            #[tokio::test]
            async fn an_append_on_the_version_the_stream_is_at_is_stored() {
                let (store, _guard) = $open.await;
                checks::an_append_on_the_version_the_stream_is_at_is_stored(&store).await;
            }

            #[tokio::test]
            async fn an_append_on_a_version_the_stream_moved_past_is_refused_whole() {
                let (store, _guard) = $open.await;
                checks::an_append_on_a_version_the_stream_moved_past_is_refused_whole(&store).await;
            }

            #[tokio::test]
            async fn an_append_on_the_right_seq_but_another_event_there_is_refused() {
                let (store, _guard) = $open.await;
                checks::an_append_on_the_right_seq_but_another_event_there_is_refused(&store).await;
            }

            #[tokio::test]
            async fn a_decision_appended_again_is_a_duplicate_whatever_the_version() {
                let (store, _guard) = $open.await;
                checks::a_decision_appended_again_is_a_duplicate_whatever_the_version(&store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn of_concurrent_appends_on_one_version_exactly_one_is_stored() {
                let (store, _guard) = $open.await;
                checks::of_concurrent_appends_on_one_version_exactly_one_is_stored(&store).await;
            }

            #[tokio::test]
            async fn events_are_gapless_in_order_and_chained() {
                let (store, _guard) = $open.await;
                checks::events_are_gapless_in_order_and_chained(&store).await;
            }

            #[tokio::test]
            async fn ranges_and_streams_read_what_they_name() {
                let (store, _guard) = $open.await;
                checks::ranges_and_streams_read_what_they_name(&store).await;
            }
        }
    };
}

/// An empty SQLite ledger in a temp dir, and its writer.
async fn sqlite() -> (invitation_ledger::ledger::LedgerWriter, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (writer, _thread) = invitation_ledger::ledger::LedgerWriter::start(&dir.path().join("ledger.db")).unwrap();
    (writer, dir)
}

contract_suite!(sqlite_store, sqlite());

// Only its fresh databases are used here; the server helpers serve tests/api.
#[allow(dead_code)]
#[path = "support/postgres.rs"]
mod postgres_support;

/// An empty PostgreSQL ledger in a database of its own.
async fn postgres() -> (invitation_ledger::ledger::postgres::PgLedger, ()) {
    let url = postgres_support::fresh_database().await;
    (invitation_ledger::ledger::postgres::PgLedger::connect(&url).await.expect("connect to the test database"), ())
}

contract_suite!(postgres_store, postgres());
