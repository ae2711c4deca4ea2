-- The ledger: one append-only table of events. Everything else is derived.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    event_key   TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL,
    stream      TEXT,
    recorded_at TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    signature   TEXT,
    prev_hash   BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash        BLOB    NOT NULL CHECK (length(hash) = 32)
);

CREATE INDEX events_by_stream ON events (stream, seq) WHERE stream IS NOT NULL;

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

-- Written by the readiness probe: proves the database accepts a commit.
CREATE TABLE health_probe (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at TEXT NOT NULL
);
