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
    -- When its oldest obligation being retried was first requested (Unix
    -- microseconds); NULL when none is.
    retrying_since INTEGER,
    -- 1 when its claim was first seen by the sweep (a webhook that did not
    -- arrive), else 0.
    found_by_sweep INTEGER NOT NULL,
    -- 1 while a creation or cancellation asked through the service has no
    -- known outcome (none recorded yet, or no answer came), else 0.
    outcome_unknown INTEGER NOT NULL,
    state         TEXT    NOT NULL
);

-- Every list, page and audit page reads through an index in the order it
-- shows, so what it reads is what it shows, whatever the file holds. Each
-- index is one more B-tree each saved row updates; these are the ones a
-- read needs. Lists choose the index of their most selective filter (see
-- projection::query::list).
CREATE INDEX invitations_by_code ON invitations (code, invitation_id) WHERE code IS NOT NULL;
CREATE INDEX invitations_by_status ON invitations (status, invitation_id) WHERE status IS NOT NULL;
CREATE INDEX invitations_by_payout_state ON invitations (payout_state, invitation_id);
CREATE INDEX invitations_by_inviter ON invitations (inviter_uma, invitation_id) WHERE inviter_uma IS NOT NULL;
CREATE INDEX invitations_by_invitee ON invitations (invitee_uma, invitation_id) WHERE invitee_uma IS NOT NULL;
CREATE INDEX invitations_by_audit_inviter ON invitations (audit_inviter, invitation_id)
    WHERE audit_inviter IS NOT NULL;
-- The status page's most recent invitations.
CREATE INDEX invitations_by_last_seq ON invitations (last_seq);
-- The few rows an operator must decide on (in doubt or failed), most
-- recent first. The query repeats this condition word for word, which is
-- how SQLite knows the partial index answers it.
CREATE INDEX invitations_needing_an_operator ON invitations (last_seq)
    WHERE payout_state IN ('in_doubt', 'failed') OR incentive_state IN ('in_doubt', 'failed')
       OR notification_state IN ('in_doubt', 'failed') OR failure_notice_state IN ('in_doubt', 'failed');
-- Keyed by the work value, so by rowid within it: a new row is appended at
-- the edge of its value's run instead of a random page (rows are new
-- invitations far more often than not).
CREATE INDEX invitations_with_work ON invitations (work) WHERE work <> 0;
-- The oldest obligation being retried, for /metrics: one step down the
-- index, however many are being retried.
CREATE INDEX invitations_retrying ON invitations (retrying_since) WHERE retrying_since IS NOT NULL;
-- Only the few rows still waiting for their data: counted on every status
-- page and metrics scrape.
CREATE INDEX invitations_awaiting_data ON invitations (source) WHERE awaiting_data = 1;
-- Only the claims the sweep found: listed on the status page.
CREATE INDEX invitations_found_by_sweep ON invitations (last_seq) WHERE found_by_sweep = 1;
-- Only the creations and cancellations without a known outcome: listed on
-- the status page for an operator.
CREATE INDEX invitations_outcome_unknown ON invitations (last_seq) WHERE outcome_unknown = 1;

-- Aggregates the fold keeps in the same transaction as the rows (see
-- projection::tally), so no page or scrape counts rows: a row whose count
-- reaches zero is removed.
CREATE TABLE obligation_counts (
    kind  TEXT    NOT NULL,
    state TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (kind, state)
) WITHOUT ROWID;
-- The incentive audit's totals: validated, ineligible, pending, inviters.
CREATE TABLE audit_totals (
    name TEXT    PRIMARY KEY,
    n    INTEGER NOT NULL
) WITHOUT ROWID;
-- Per inviter the audit credits: its invitations and their decisions.
CREATE TABLE audit_inviters (
    inviter_uma TEXT    PRIMARY KEY,
    invitations INTEGER NOT NULL,
    validated   INTEGER NOT NULL,
    ineligible  INTEGER NOT NULL,
    pending     INTEGER NOT NULL
) WITHOUT ROWID;
-- Incentives forwarded, per inviter ('' for all of them), currency and
-- the decimals their requests stated (-1: none): the sum and how many.
CREATE TABLE audit_forwarded (
    inviter_uma TEXT    NOT NULL,
    currency    TEXT    NOT NULL,
    decimals    INTEGER NOT NULL,
    minor_units INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (inviter_uma, currency, decimals)
) WITHOUT ROWID;
-- Events about an invitation per hour of `recorded_at` (`2026-12-07T14`),
-- for the status page's charts.
CREATE TABLE activity_hours (
    hour       TEXT    PRIMARY KEY,
    webhooks   INTEGER NOT NULL,
    payouts    INTEGER NOT NULL,
    incentives INTEGER NOT NULL
) WITHOUT ROWID;

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
-- writing, to log that the machine restarted since. The file is written
-- so that a power cut leaves it consistent (possibly behind its ledger):
-- a new boot folds the events after the checkpoint above, nothing more.
CREATE TABLE projection_boot (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    boot_id TEXT NOT NULL
);
