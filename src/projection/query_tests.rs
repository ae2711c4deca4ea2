//! Tests of the read side's queries (`super`).

use super::*;
use crate::projection::store::{self, save_with, Row, SAVE};
use crate::projection::view::work_bits;

/// A projection file holding one row per `(id, work)`, saved in the
/// given order (the order rows get their rowids in).
fn projections_with(rows: &[(&str, i64)]) -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = store::open(&dir.path().join("ledger.db")).unwrap();
    let mut insert = conn.prepare(SAVE).unwrap();
    for (id, work) in rows {
        let mut row = Row::of(&InvitationState::new(*id));
        row.work = *work;
        save_with(&mut insert, &row).unwrap();
    }
    drop(insert);
    (dir, conn)
}

fn ids(states: &[InvitationState]) -> Vec<&str> {
    states.iter().map(|s| s.invitation_id.as_str()).collect()
}

#[test]
fn work_is_read_for_every_value_sharing_a_bit_with_the_mask_in_id_order() {
    // Given rows saved out of id order, with every kind of work
    let payment = work_bits::INVITEE_PAYMENT;
    let fetch = work_bits::FETCH;
    let (_dir, conn) = projections_with(&[
        ("d", payment | work_bits::INVITER_INCENTIVE),
        ("a", fetch),
        ("c", 0),
        ("b", payment),
        ("e", work_bits::INVITER_NOTIFICATION),
    ]);
    // When the reconciler can pay, then it reads both rows owing a payment, by id
    assert_eq!(ids(&needing_work(&conn, payment).unwrap()), ["b", "d"]);
    // When it can also fetch, the fetch joins them in id order
    assert_eq!(ids(&needing_work(&conn, payment | fetch).unwrap()), ["a", "b", "d"]);
    // When it can do everything, every row with work, and never the one without
    assert_eq!(ids(&needing_work(&conn, work_bits::ALL).unwrap()), ["a", "b", "d", "e"]);
    // When nothing is configured, nothing
    assert!(needing_work(&conn, 0).unwrap().is_empty());
}

#[test]
fn a_row_whose_work_changes_while_work_is_read_is_read_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let payment = work_bits::INVITEE_PAYMENT;
    let notification = work_bits::INVITER_NOTIFICATION;
    let (dir, conn) = projections_with(&[("a", payment), ("b", notification)]);
    let projector = Arc::new(Mutex::new(store::open(&dir.path().join("ledger.db")).unwrap()));
    let set_a = |work: i64, projector: &Connection| {
        projector.execute("UPDATE invitations SET work = ?1 WHERE invitation_id = 'a'", [work]).unwrap();
    };
    // The projector folds at the nth step of SQLite's machine during the read.
    let (steps, nth) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    conn.progress_handler(1, {
        let (steps, nth, projector) = (steps.clone(), nth.clone(), projector.clone());
        Some(move || {
            if steps.fetch_add(1, Ordering::SeqCst) + 1 == nth.load(Ordering::SeqCst) {
                set_a(payment | notification, &projector.lock().unwrap());
            }
            false
        })
    });
    // At every point of the read in turn:
    for n in 1..=200 {
        // Given an invitation owing a payment, and one owing a notification
        set_a(payment, &projector.lock().unwrap());
        steps.store(0, Ordering::SeqCst);
        nth.store(n, Ordering::SeqCst);
        // When, while the reconciler reads its work, the projector folds
        // an event that makes the first owe a notification too
        let read = needing_work(&conn, payment | notification).unwrap();
        // Then each invitation comes once: twice, its payment could be
        // acted on twice in one pass
        assert_eq!(ids(&read), ["a", "b"], "the projector folded at step {n} of the read");
    }
}

#[test]
fn the_oldest_retrying_obligation_is_found_through_the_index_of_rows_being_retried() {
    // Given a payment retried since 10:00, an incentive since 09:00 on
    // another invitation, a notification requested (not retrying) since
    // 08:00, a payment sent a second time since 07:00, and the schema's
    // plan for the query
    use crate::projection::events::ObligationKind;
    use crate::projection::state::ObligationPhase;
    let dir = tempfile::tempdir().unwrap();
    let conn = store::open(&dir.path().join("ledger.db")).unwrap();
    let (_empty_dir, empty) = projections_with(&[("idle", 0)]);
    let retrying = |id: &str, kind: ObligationKind, phase, since: &str| {
        let mut s = InvitationState::new(id);
        let rec = match kind {
            ObligationKind::InviteePayment => &mut s.payout,
            ObligationKind::InviterIncentive => &mut s.incentive,
            ObligationKind::InviterNotification => &mut s.notification,
            ObligationKind::InviterFailureNotice => &mut s.failure_notice,
        };
        rec.phase = phase;
        rec.window_started_at = Some(since.to_owned());
        s
    };
    let mut insert = conn.prepare(SAVE).unwrap();
    for s in [
        retrying("a", ObligationKind::InviteePayment, ObligationPhase::RetryScheduled, "2026-11-01T10:00:00Z"),
        retrying("b", ObligationKind::InviterIncentive, ObligationPhase::RetryScheduled, "2026-11-01T09:00:00Z"),
        retrying("c", ObligationKind::InviterNotification, ObligationPhase::Requested, "2026-11-01T08:00:00Z"),
        {
            // a payment whose second attempt is in flight: still being
            // retried, since its first request at 07:00
            let mut d =
                retrying("d", ObligationKind::InviteePayment, ObligationPhase::Requested, "2026-11-01T07:00:00Z");
            d.payout.attempts = 2;
            d
        },
    ] {
        save_with(&mut insert, &Row::of(&s)).unwrap();
    }
    drop(insert);
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {RETRYING}"))
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // When the oldest retrying obligation is asked for
    let oldest = oldest_retrying(&conn).unwrap();
    // Then it is the re-sent payment's 07:00, read through the partial index
    assert_eq!(oldest, crate::time::instant("2026-11-01T07:00:00Z"));
    assert!(plan.iter().any(|step| step.contains("invitations_retrying")), "plan: {plan:?}");
    // And with nothing retrying there is none
    assert_eq!(oldest_retrying(&empty).unwrap(), None);
}

#[test]
fn work_is_looked_up_through_the_index_of_rows_with_work() {
    // Given the projection schema, when SQLite plans the work query,
    // then it searches the partial index rather than scanning every row
    let (_dir, conn) = projections_with(&[]);
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {NEEDING_WORK}"))
        .unwrap()
        .query_map(rusqlite::params_from_iter([2i64; 15]), |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(plan.iter().any(|step| step.contains("USING INDEX invitations_with_work (work=?)")), "plan: {plan:?}");
}

#[test]
fn the_projections_log_stays_a_few_mebibytes_however_much_is_folded() {
    // Given a projection file folded a few rows at a time, as the
    // projector commits (each commit adds its pages to the WAL)
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let mut conn = store::open(&db).unwrap();
    for batch in 0..300 {
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx.prepare(SAVE).unwrap();
            for n in 0..5 {
                let mut s = InvitationState::new(format!("UmaInvitation:wal-{batch}-{n}"));
                s.payout.receiver_uma = Some(format!("$invitee{batch}x{n}@other.example"));
                save_with(&mut insert, &Row::of(&s)).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    // Then its WAL holds a few mebibytes at most, not the thousand pages
    // of SQLite's default checkpoint (16 MiB of 16 KiB ones): on a nearly full disk
    // that much log, plus the file a checkpoint must grow to copy it into,
    // was more than a freed disk had, and nothing could be written again
    let wal = std::fs::metadata(ledger::suffixed(&store::path(&db), "-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(wal <= 4 << 20, "the projections' WAL is {wal} bytes");
}
