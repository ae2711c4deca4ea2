-- Projections: disposable state derived from the ledger by a pure fold,
-- kept in their own file beside the ledger (`<ledger>-projections`). This
-- file is not a migration: the projection file records its version in
-- `user_version` (PROJECTION_SCHEMA_VERSION in projection/store.rs), and a
-- file of another version is emptied and folded again from the ledger.
-- `state` is the canonical JSON of one invitation's projection; the other
-- columns are copies of it kept for lookups and filters.
CREATE TABLE invitations (
    invitation_id TEXT    PRIMARY KEY,
    code          TEXT,
    status        TEXT,
    inviter_uma   TEXT,
    invitee_uma   TEXT,
    payout_state       TEXT    NOT NULL,
    incentive_state    TEXT    NOT NULL,
    notification_state TEXT    NOT NULL,
    failure_notice_state TEXT  NOT NULL,
    -- What the fetcher or the reconciler may have to do, as bits: 1 fetch,
    -- 2 invitee payment, 4 inviter incentive, 8 either notification of the
    -- inviter (the invitee joined, or the invitee's payment failed).
    work          INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL,
    -- Whom the incentive audit credits: the receiver its first request
    -- named, else the inviter the invitation names now.
    audit_inviter TEXT,
    -- Who tells us about it (lightspark, grid), and whether a claim came
    -- without its data and no fetch has given it yet (1) or not (0).
    source        TEXT    NOT NULL,
    awaiting_data INTEGER NOT NULL,
    -- 1 when its claim was first seen by the sweep (a webhook that did not
    -- arrive), else 0.
    found_by_sweep INTEGER NOT NULL,
    -- 1 while a creation or cancellation asked through the service has no
    -- known outcome (none recorded yet, or no answer came), else 0.
    outcome_unknown INTEGER NOT NULL,
    state         TEXT    NOT NULL
);

-- Only the indexes a query uses: every index is one more B-tree each saved
-- row updates (a rebuild writes 500,000 rows for 1,000,000 events). The
-- list filters (status, payout state, inviter) are optional parameters
-- (`?1 IS NULL OR status = ?1`), which SQLite cannot answer from an index,
-- so lists walk the primary key in id order and filter as they go.
CREATE INDEX invitations_by_code ON invitations (code) WHERE code IS NOT NULL;
-- Keyed by the work value, so by rowid within it: a new row is appended at
-- the edge of its value's run instead of a random page (rows are new
-- invitations far more often than not).
CREATE INDEX invitations_with_work ON invitations (work) WHERE work <> 0;
-- Only the few rows still waiting for their data: counted on every status
-- page and metrics scrape.
CREATE INDEX invitations_awaiting_data ON invitations (source) WHERE awaiting_data = 1;
-- Only the claims the sweep found: listed on the status page.
CREATE INDEX invitations_found_by_sweep ON invitations (last_seq) WHERE found_by_sweep = 1;
-- Only the creations and cancellations without a known outcome: listed on
-- the status page for an operator.
CREATE INDEX invitations_outcome_unknown ON invitations (last_seq) WHERE outcome_unknown = 1;

-- The last ledger seq folded into the rows above, written in the same
-- transaction as them, and the ledger's hash at that seq: the projections
-- belong to the ledger that holds exactly this hash there. Another one (a
-- restored backup, a replaced or truncated file) gets them emptied and
-- folded again before anything reads them.
CREATE TABLE projection_checkpoint (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq    INTEGER NOT NULL,
    ledger_hash BLOB
);
INSERT INTO projection_checkpoint (id, last_seq, ledger_hash) VALUES (1, 0, NULL);

-- The boot of the machine under which this file was last opened for
-- writing. The file is written without syncs; only a crash of the machine
-- (a new boot) can tear it, and then it is emptied and folded again.
CREATE TABLE projection_boot (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    boot_id TEXT NOT NULL
);
