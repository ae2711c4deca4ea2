-- The ledger in PostgreSQL: the same table, encoding and chain as the
-- SQLite ledger (schema/0001..0005), so a copy has the same head hash.
-- Event keys are unique in the database; appends go through
-- ledger_append (below), one call per group commit.
CREATE TABLE events (
    seq         BIGINT PRIMARY KEY,
    -- "C": keys and streams compare byte by byte, as in SQLite, so a
    -- prefix range finds the same keys.
    event_key   TEXT COLLATE "C" NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    stream      TEXT COLLATE "C",
    recorded_at TEXT NOT NULL,
    body        BYTEA NOT NULL,
    signature   TEXT,
    prev_hash   BYTEA NOT NULL CHECK (length(prev_hash) = 32),
    hash        BYTEA NOT NULL CHECK (length(hash) = 32)
);

CREATE INDEX events_by_stream ON events (stream, seq) WHERE stream IS NOT NULL;

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % is not allowed', TG_OP;
END $$;

CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- seq is gapless: each new event takes exactly the next position.
CREATE FUNCTION events_gapless() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq <> (SELECT coalesce(max(seq), 0) + 1 FROM events) THEN
        RAISE EXCEPTION 'ledger seq must be the next position';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER events_seq_gapless BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_gapless();

-- Who may reconcile: the epoch grows with each new leader, and every
-- reconciler append carries the epoch it leads under (fencing).
CREATE TABLE reconciler_leadership (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    epoch      BIGINT NOT NULL,
    holder     TEXT,
    renewed_at TIMESTAMPTZ
);
INSERT INTO reconciler_leadership (id, epoch) VALUES (1, 0);

-- Written by the readiness probe: proves the database accepts a commit.
CREATE TABLE health_probe (
    instance  TEXT PRIMARY KEY,
    probed_at TIMESTAMPTZ NOT NULL
);

-- f(x) of the chain: u32be(len x) ‖ x, or u32be(0xFFFFFFFF) alone for NULL.
CREATE FUNCTION ledger_field(x BYTEA) RETURNS BYTEA LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN x IS NULL THEN '\xffffffff'::bytea ELSE int4send(length(x)) || x END
$$;

-- One group commit: every event of every call of a batch, in order, in
-- the caller's transaction. An event is numbered from 1 and belongs to a
-- call (calls[i]); a call may carry the stream version its decision saw
-- (call_versions, with call_streams, and call_hashes: the hash of the
-- stream's last event it saw, when known) and the epoch it leads under
-- (call_epochs). Each event gets one row: its seq and hash, or the seq and
-- hash holding its key (duplicate), or why its call was refused ('conflict' with the
-- stream's version, 'fenced' with the epoch now). A call is checked before
-- its first new event, so a refused one stored nothing.
CREATE FUNCTION ledger_append(
    keys TEXT[], kinds TEXT[], streams TEXT[], bodies BYTEA[], signatures TEXT[], sibling_prefixes TEXT[],
    calls INTEGER[], call_streams TEXT[], call_versions BIGINT[], call_hashes BYTEA[], call_epochs BIGINT[],
    at TEXT)
RETURNS TABLE (ix INTEGER, seq BIGINT, duplicate BOOLEAN, sibling BOOLEAN, refused TEXT, actual BIGINT,
    event_hash BYTEA)
LANGUAGE plpgsql AS $$
DECLARE
    n_calls INTEGER := coalesce(array_length(call_streams, 1), 0);
    checked BOOLEAN[] := array_fill(false, ARRAY[n_calls]);
    refusal TEXT[] := array_fill(NULL::text, ARRAY[n_calls]);
    refused_actual BIGINT[] := array_fill(NULL::bigint, ARRAY[n_calls]);
    head_seq BIGINT;
    head_hash BYTEA;
    epoch_now BIGINT;
    existing BIGINT;
    existing_hash BYTEA;
    has_sibling BOOLEAN;
    version BIGINT;
    version_hash BYTEA;
    h BYTEA;
    c INTEGER;
BEGIN
    -- One writer at a time, whichever instance: the chain is one line.
    PERFORM pg_advisory_xact_lock(7321001);
    SELECT e.seq, e.hash INTO head_seq, head_hash FROM events e ORDER BY e.seq DESC LIMIT 1;
    IF head_seq IS NULL THEN
        head_seq := 0;
        head_hash := decode(repeat('00', 32), 'hex');
    END IF;
    SELECT l.epoch INTO epoch_now FROM reconciler_leadership l WHERE l.id = 1;
    FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
        c := calls[i];
        ix := i;
        IF refusal[c] IS NOT NULL THEN
            seq := NULL; duplicate := false; sibling := false; refused := refusal[c]; actual := refused_actual[c];
            event_hash := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        existing := NULL;
        SELECT e.seq, e.hash INTO existing, existing_hash FROM events e WHERE e.event_key = keys[i];
        has_sibling := sibling_prefixes[i] IS NOT NULL AND EXISTS (
            SELECT 1 FROM events e
            WHERE e.event_key >= sibling_prefixes[i] AND e.event_key < sibling_prefixes[i] || chr(1114111)
              AND e.event_key <> keys[i]);
        IF existing IS NOT NULL THEN
            seq := existing; duplicate := true; sibling := has_sibling; refused := NULL; actual := NULL;
            event_hash := existing_hash;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF NOT checked[c] THEN
            IF call_epochs[c] IS NOT NULL AND call_epochs[c] IS DISTINCT FROM epoch_now THEN
                refusal[c] := 'fenced';
                refused_actual[c] := epoch_now;
            ELSIF call_versions[c] IS NOT NULL THEN
                version := NULL;
                version_hash := NULL;
                SELECT e.seq, e.hash INTO version, version_hash
                    FROM events e WHERE e.stream = call_streams[c] ORDER BY e.seq DESC LIMIT 1;
                version := coalesce(version, 0);
                -- The same seq with another event there (a restored ledger
                -- grown again) is another version.
                IF version <> call_versions[c]
                    OR (call_hashes[c] IS NOT NULL AND version_hash IS DISTINCT FROM call_hashes[c]) THEN
                    refusal[c] := 'conflict';
                    refused_actual[c] := version;
                END IF;
            END IF;
            IF refusal[c] IS NOT NULL THEN
                seq := NULL; duplicate := false; sibling := false; refused := refusal[c]; actual := refused_actual[c];
                event_hash := NULL;
                RETURN NEXT;
                CONTINUE;
            END IF;
            checked[c] := true;
        END IF;
        head_seq := head_seq + 1;
        h := sha256(head_hash || int8send(head_seq)
            || ledger_field(convert_to(keys[i], 'UTF8')) || ledger_field(convert_to(kinds[i], 'UTF8'))
            || ledger_field(convert_to(streams[i], 'UTF8')) || ledger_field(convert_to(at, 'UTF8'))
            || ledger_field(bodies[i]) || ledger_field(convert_to(signatures[i], 'UTF8')));
        INSERT INTO events (seq, event_key, kind, stream, recorded_at, body, signature, prev_hash, hash)
            VALUES (head_seq, keys[i], kinds[i], streams[i], at, bodies[i], signatures[i], head_hash, h);
        head_hash := h;
        seq := head_seq; duplicate := false; sibling := has_sibling; refused := NULL; actual := NULL;
        event_hash := h;
        RETURN NEXT;
    END LOOP;
END $$;

-- A new leader's epoch, greater than every earlier one; taken under the
-- appends' own lock, so no append decided under the old epoch lands after.
CREATE FUNCTION ledger_new_epoch(new_holder TEXT) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    e BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(7321001);
    UPDATE reconciler_leadership SET epoch = epoch + 1, holder = new_holder, renewed_at = now()
        WHERE id = 1 RETURNING epoch INTO e;
    RETURN e;
END $$;
