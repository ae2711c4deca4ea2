-- Event-key and stream lookups move to the index file beside the ledger
-- (`<ledger>-index`, derived from the ledger): in the synced ledger, each
-- random key dirtied another index page per event. The table is copied
-- without its UNIQUE constraint and the stream index is dropped; the
-- writer still stores each key once (it looks it up in the index file
-- first), and `verify` checks that every key is unique.
CREATE TABLE events_v4 (
    seq         INTEGER PRIMARY KEY,
    event_key   TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    stream      TEXT,
    recorded_at TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    signature   TEXT,
    prev_hash   BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash        BLOB    NOT NULL CHECK (length(hash) = 32)
);

INSERT INTO events_v4 (seq, event_key, kind, stream, recorded_at, body, signature, prev_hash, hash)
SELECT seq, event_key, kind, stream, recorded_at, body, signature, prev_hash, hash FROM events ORDER BY seq;

DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;

-- seq is gapless: each new event takes exactly the next position.
CREATE TRIGGER events_seq_gapless BEFORE INSERT ON events
WHEN NEW.seq IS NULL OR NEW.seq <> (SELECT COALESCE(MAX(seq), 0) + 1 FROM events)
BEGIN
    SELECT RAISE(ABORT, 'ledger seq must be the next position');
END;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE is not allowed');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only: DELETE is not allowed');
END;
