-- Event keys are unique in the ledger itself, checked in the append's own
-- transaction: a dedupe index kept in a file beside the ledger (schema 4)
-- could, stale or damaged, answer "duplicate" for a key the ledger did not
-- hold, or let a key be stored twice. That file is no longer read; the
-- writer removes it.
CREATE UNIQUE INDEX events_by_key ON events (event_key);

-- Each invitation's events, in order: a conditional append compares the
-- stream's last seq with the one its decision saw, and a decision taken
-- again reads the stream it is about.
CREATE INDEX events_by_stream ON events (stream, seq) WHERE stream IS NOT NULL;
