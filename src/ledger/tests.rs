//! Tests of the SQLite ledger's own functions (`super`).

use super::*;

fn event(n: u32, stream: &str) -> NewEvent {
    NewEvent::test_webhook(n, Some(stream), format!("{{\"n\":{n}}}"))
}

#[tokio::test]
async fn walking_by_stream_gives_every_event_once_by_stream_then_seq() {
    // given 11 events of 3 invitations, interleaved, and one without a stream
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let (writer, thread) = LedgerWriter::start(&db).unwrap();
    let streams = ["Inv:b", "Inv:a", "Inv:c"];
    let mut events: Vec<NewEvent> = (0..11).map(|n| event(n, streams[n as usize % 3])).collect();
    events[4].stream = None;
    writer.append_all(events).await.unwrap();
    drop(writer);
    thread.join().unwrap();
    // when they are walked by stream, up to seq 10, on a read-only connection
    let conn = open_read_only(&db).unwrap();
    let walk = || {
        let mut seen = Vec::new();
        for_each_by_stream(&conn, 10, |e| -> Result<(), LedgerError> {
            seen.push((e.stream.unwrap().to_owned(), e.seq));
            Ok(())
        })
        .unwrap();
        seen
    };
    // then every event with a stream up to 10 comes once, by stream then seq
    let mut expected: Vec<(String, u64)> =
        (1..=10u64).filter(|seq| *seq != 5).map(|seq| (streams[(seq as usize - 1) % 3].to_owned(), seq)).collect();
    expected.sort();
    assert_eq!(walk(), expected);
    // and a second walk on the same connection, the same
    assert_eq!(walk(), expected);
}

// Test-only constructors, visible to the whole crate's tests.
impl NewEvent {
    /// The `n`th unsigned webhook of a test, keyed `lightspark:e<n>:00`,
    /// with `body` as given.
    pub(crate) fn test_webhook(n: u32, stream: Option<&str>, body: impl Into<Vec<u8>>) -> NewEvent {
        NewEvent {
            event_key: EventKey::stored(format!("lightspark:e{n}:00")),
            kind: EventKind::WebhookReceived,
            stream: stream.map(StreamId::from),
            body: body.into(),
            signature: None,
            sibling_prefix: None,
        }
    }
}
