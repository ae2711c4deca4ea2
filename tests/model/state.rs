//! The model's state: what each actor holds, kept small and hashable
//! (stateright fingerprints every state it meets), and the bounds and
//! guards a check runs with.

use super::world::{Entry, Snap};

/// The protections of the protocol that a check can switch off, to show
/// that the checker finds the counterexample each one prevents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guards {
    /// The reconciler decides again, on the ledger as it holds it and with
    /// the clock as it is, right before each effect (`Reconciler::execute`
    /// reloads and calls `next_action` again). Off: it acts on the decision
    /// its pass took when it started, however long ago.
    pub redecide: bool,
    /// Appends that follow a decision are refused when the invitation's
    /// stream moved on since the version they were decided on
    /// (`LedgerStore::append_if`). Off: they are stored whatever happened.
    pub version_check: bool,
    /// The ledger refuses a reconciler's append once a higher epoch than
    /// the one it carries was granted. Off: every epoch is accepted.
    pub fencing: bool,
    /// A version names the hash of the stream's last event besides its
    /// seq (`Expected::with_hash`), so a stream restored and grown again
    /// to the same seq is another version. Off: the seq alone.
    pub version_hash: bool,
    /// Right before its call the reconciler checks that the call can reach
    /// the platform inside the window (`decide::may_call`). Off: it calls
    /// however long it stood still since recording the request.
    pub call_check: bool,
}

impl Guards {
    pub const ALL_ON: Guards =
        Guards { redecide: true, version_check: true, fencing: true, version_hash: true, call_check: true };
}

/// A version of the stream, as an append conditional on it names it: its
/// last seq and a digest of every event up to it (the real hash chain's
/// stand-in: two histories have the same digest only if they are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    pub seq: u8,
    pub digest: u32,
}

/// How far a check explores, and which faults and deliveries it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    /// The last tick time can reach step by step; after it, only the jump
    /// to [`super::world::END`].
    pub horizon: u8,
    /// `IDEMPOTENCY_WINDOW` in ticks. The request timeout is one tick, so
    /// the reconciler re-sends while a request is younger than
    /// `window - 1` ticks.
    pub window: u8,
    /// How long the platform remembers a key after executing it, in ticks
    /// (Stripe: as long as the window it promises, the edge case).
    pub platform_memory: u8,
    /// The snapshots the source delivers, each once, in any order and at
    /// any time before the end (a snapshot listed twice is a redelivery of
    /// the same bytes).
    pub deliveries: Vec<Snap>,
    /// Faults in all, of any kind: crashes, pauses, restores, platform
    /// failures.
    pub faults: u8,
    /// Whether a restore of the ledger to an older prefix is one of them.
    pub restores: bool,
    /// Whether a restore stops and starts every instance, as restoring the
    /// SQLite ledger does (its lock file keeps a running service away).
    /// Off: instances keep running across the restore, holding decisions
    /// taken on the ledger as it was (a database restored under them).
    pub restore_restarts: bool,
    /// Whether an operator's decision taken before a restore may be
    /// recorded after it, on the version the operator saw (the page's form
    /// carries it). Off: a restore discards the decisions not yet recorded.
    pub pages_survive_restore: bool,
    /// Whether operators decide only when no call is on its way to the
    /// platform (they act later than a request timeout after what they
    /// look at). Off: an operator may look while a request decided before
    /// the window closed has yet to arrive.
    pub operators_wait_for_calls: bool,
    /// Whether a reconciler paused past its lease may stay paused while
    /// time passes beyond its request's timeout (between its decision and
    /// its call). Off: a pause outlasts the lease (another instance takes
    /// over) but not the request timeout.
    pub long_pauses: bool,
}

/// One reconciler instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rec {
    /// The epoch it believes it leads under; 0: it does not lead.
    pub epoch: u8,
    /// Stopped (SIGSTOP, a long pause): takes no step until resumed.
    pub paused: bool,
    pub pc: Pc,
}

/// Where a reconciler is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pc {
    Idle,
    /// It decided to append `payload` (a request, or an in-doubt record)
    /// on stream version `version`; `deadline`: the last tick its call may
    /// reach the platform, when the decision read the clock right before
    /// the effect.
    Decided {
        payload: u16,
        version: Version,
        deadline: Option<u8>,
        /// The tick the obligation's window started at, as decided on
        /// (`None`: this request opens it).
        window: Option<u8>,
    },
    /// Its request (`payload`) is recorded, making version `recorded`; the
    /// call is next and reaches the platform by `deadline`.
    Calling {
        payload: u16,
        recorded: Version,
        deadline: u8,
        flags: u8,
        window: Option<u8>,
    },
    /// The answer came back as outcome event `payload` for the request at
    /// `requested_seq`; it is recorded on `version`.
    Answered {
        payload: u16,
        requested_seq: u8,
        version: Version,
    },
}

/// Flags a request carries from its append to its execution (ghosts).
pub mod request_flags {
    /// The ledger said CANCELLED when the request was appended.
    pub const CANCELLED_BEFORE: u8 = 1;
    /// Its receiver or amount is not what the snapshot that made the
    /// obligation due said.
    pub const WRONG_BODY: u8 = 2;
    /// A restore cut its record while it was on its way (an instance left
    /// running across the restore): money it moves is money whose record
    /// a restore lost.
    pub const RECORD_LOST: u8 = 4;
}

/// One operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Idle,
    /// Decided `payload` (an `obligation.resolved`) on version `seen`;
    /// `by_hand`: a "paid" for money the operator sends outside the platform.
    Decided {
        payload: u16,
        seen: Version,
        by_hand: bool,
    },
    Done,
}

/// The platform's memory of the obligation's idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Unknown,
    /// A request with the key is being processed (later ones answer 409);
    /// it executes when it finishes.
    Processing {
        request: u16,
        flags: u8,
    },
    /// Executed `request` at tick `at`; remembered for `platform_memory`.
    Done {
        request: u16,
        at: u8,
    },
}

/// What the properties read: facts no actor can see.
pub mod ghost {
    /// A payment executed a request whose body differs from the facts that
    /// made the obligation due.
    pub const WRONG_BODY: u16 = 1;
    /// A payment executed a request appended while the invitation was
    /// cancelled.
    pub const PAID_AFTER_CANCEL: u16 = 2;
    /// An append was stored under an epoch lower than the highest granted.
    pub const DEPOSED_RECORD: u16 = 4;
    /// An `obligation.in_doubt` was stored that the ledger, as it stood,
    /// did not call for.
    pub const BAD_IN_DOUBT: u16 = 8;
    /// A restore lost the record of money that moved (a request the
    /// platform executed, an operator's payment by hand): only a platform
    /// remembering keys longer than the copy's age plus a window
    /// deduplicates what is sent again (docs/simulation.md).
    pub const RESTORE_LOST_PAYMENT: u16 = 16;
    /// The ledger refused a deposed reconciler's append (reachability).
    pub const FENCED: u16 = 32;
    /// The ledger refused an operator's decision (reachability).
    pub const OPERATOR_REFUSED: u16 = 64;
}

/// The whole system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    pub clock: u8,
    pub ledger: Vec<Entry>,
    /// The highest epoch the lock has granted.
    pub granted: u8,
    /// Who holds the lock, and whether its lease is alive (a paused or
    /// crashed holder's lapses, and another instance may take it).
    pub holder: Option<u8>,
    pub lease_live: bool,
    pub recs: [Rec; 2],
    pub ops: [Op; 2],
    pub key: Key,
    /// Deliveries made, one bit each.
    pub delivered: u8,
    pub faults: u8,
    /// Platform executions of the key, and payments operators made by hand.
    pub executions: u8,
    pub by_hand: u8,
    pub ghost: u16,
}

impl State {
    pub fn initial() -> Self {
        let rec = |epoch| Rec { epoch, paused: false, pc: Pc::Idle };
        State {
            clock: 0,
            ledger: Vec::new(),
            granted: 1,
            holder: Some(0),
            lease_live: true,
            recs: [rec(1), rec(0)],
            ops: [Op::Idle, Op::Idle],
            key: Key::Unknown,
            delivered: 0,
            faults: 0,
            executions: 0,
            by_hand: 0,
            ghost: 0,
        }
    }

    /// The stream's version (one invitation, one stream): its last seq
    /// and the digest of its events (FNV-1a over each event and its tick,
    /// as the chain hashes each event's contents and `recorded_at`).
    pub fn version(&self) -> Version {
        let mut digest: u32 = 0x811c_9dc5;
        for e in &self.ledger {
            for byte in e.payload.to_le_bytes().into_iter().chain([e.at]) {
                digest = (digest ^ u32::from(byte)).wrapping_mul(0x0100_0193);
            }
        }
        Version { seq: u8::try_from(self.ledger.len()).expect("short ledgers"), digest }
    }
}
