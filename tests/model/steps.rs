//! Every step each actor can take, one at a time: stateright explores
//! every interleaving of them. Each step stands for a piece of the real
//! code (docs/model.md maps them); the decisions inside are the real
//! functions, through [`World`].

use invitation_ledger::invitation::InvitationStatus;
use invitation_ledger::projection::events::{Decision, InDoubtReason};
use invitation_ledger::projection::state::ObligationPhase;
use invitation_ledger::projection::view::{due, obligation, still_owed, ObligationState};
use invitation_ledger::reconcile::decide::{may_call, next_action, Action};
use invitation_ledger::time::rfc3339;

use super::state::{ghost, request_flags, Bounds, Guards, Key, Op, Pc, Rec, State, Version};
use super::world::{answered, facts, instant, tag, tick_of, timed_out, What, World, END, KIND};

/// One step of one actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The source delivers its `n`-th snapshot (a webhook, appended as is).
    Deliver(u8),
    /// Time passes one tick.
    Tick,
    /// Time jumps past every window; faults and deliveries are over.
    End,
    /// Reconciler `i` folds the ledger and decides (`next_action`).
    Decide(u8),
    /// Reconciler `i` appends what it decided, on the version it decided on.
    Append(u8),
    /// Reconciler `i` calls the platform with its recorded request.
    Call(u8, Answer),
    /// Reconciler `i` records the answer.
    Record(u8),
    /// Reconciler `i` takes the lapsed lock, with a new epoch.
    Acquire(u8),
    /// Reconciler `i` stops past its lease (fault).
    Pause(u8),
    /// Reconciler `i` comes back and goes on where it was.
    Resume(u8),
    /// Reconciler `i` dies and restarts with nothing in memory (fault).
    Crash(u8),
    /// The platform finishes a request it was still processing.
    Finish,
    /// Operator `i` looks at the invitation and the platform and decides.
    Look(u8, Choice),
    /// Operator `i` records the decision, on the version looked at.
    Resolve(u8),
    /// Operator `i` goes away before recording (fault).
    OperatorCrash(u8),
    /// The ledger is restored to its first `n` events (fault).
    Restore(u8),
}

/// How the platform treats a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// As an idempotent platform does: executes a new key (2xx), replays a
    /// known one (2xx), 422 for a known key with another body, 409 while
    /// the key is processed.
    Normal,
    /// Executes, and the answer is lost: the client times out (fault).
    LostAfter,
    /// 503 before doing anything (fault).
    FailBefore,
    /// Starts processing and is still at it when the client times out;
    /// the execution happens later, at [`Step::Finish`] (fault).
    Slow,
}

/// What an operator decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The platform paid: record it with its payment id.
    Paid,
    /// Not paid, still owed: pay it by hand and record it as paid.
    PaidByHand,
    /// Not paid: send again with the same key.
    Retry,
    /// Give up.
    Failed,
}

/// What the ledger answered an append.
enum Appended {
    New(Version),
    Duplicate,
    Conflict,
    Fenced,
}

/// The model: the real code's settings, the bounds and the guards.
pub struct Protocol {
    pub world: World,
    pub bounds: Bounds,
    pub guards: Guards,
    /// When set, only these properties are checked (a guard's test stops
    /// at its counterexample).
    pub only: Option<Vec<&'static str>>,
}

impl Protocol {
    pub fn new(bounds: Bounds, guards: Guards) -> Self {
        Self { world: World::new(bounds.window), bounds, guards, only: None }
    }

    fn can_fault(&self, s: &State) -> bool {
        s.faults < self.bounds.faults && s.clock != END
    }

    /// Whether reconciler `r` holds a clock reading that its call must act
    /// on within the request timeout, so time may not pass beyond it.
    fn deadline(&self, r: &Rec) -> Option<u8> {
        if r.paused && self.bounds.long_pauses {
            return None;
        }
        match r.pc {
            Pc::Decided { deadline, .. } => deadline,
            Pc::Calling { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// The ledger actor: one append as the store does it. A key the ledger
    /// holds is answered as a duplicate first; then a reconciler's append
    /// (`epoch` > 0) is refused when a higher epoch was granted; then a
    /// conditional one (`expected`) when the stream is at another version:
    /// another seq, or (with the hash) other events up to the same seq.
    fn append(&self, s: &mut State, payload: u16, expected: Option<Version>, epoch: u8) -> Appended {
        let entry = self.world.entry(payload, s.clock, epoch);
        if s.ledger.iter().any(|e| e.key == entry.key) {
            return Appended::Duplicate;
        }
        if epoch != 0 && epoch < s.granted {
            if self.guards.fencing {
                s.ghost |= ghost::FENCED;
                return Appended::Fenced;
            }
            s.ghost |= ghost::DEPOSED_RECORD;
        }
        let now = s.version();
        let moved = |v: Version| v.seq != now.seq || (self.guards.version_hash && v.digest != now.digest);
        if expected.is_some_and(moved) && self.guards.version_check {
            return Appended::Conflict;
        }
        s.ledger.push(entry);
        Appended::New(s.version())
    }

    /// The platform executes `request`: money moves.
    fn execute(&self, s: &mut State, request: u16, flags: u8) {
        s.executions += 1;
        s.key = Key::Done { request, at: s.clock };
        if flags & request_flags::CANCELLED_BEFORE != 0 {
            s.ghost |= ghost::PAID_AFTER_CANCEL;
        }
        if flags & request_flags::RECORD_LOST != 0 {
            s.ghost |= ghost::RESTORE_LOST_PAYMENT;
        }
        if flags & request_flags::WRONG_BODY != 0 {
            s.ghost |= ghost::WRONG_BODY;
        }
    }

    fn forget(&self, s: &mut State) {
        if let Key::Done { at, .. } = s.key {
            if u16::from(s.clock) >= u16::from(at) + u16::from(self.bounds.platform_memory) {
                s.key = Key::Unknown;
            }
        }
    }

    fn same_request(&self, a: u16, b: u16) -> bool {
        match (&self.world.payload(a).what, &self.world.payload(b).what) {
            (What::Requested { request: x, .. }, What::Requested { request: y, .. }) => x == y,
            _ => false,
        }
    }

    /// The ghost flags of a request about to be appended, judged on the
    /// ledger as it stands: was the invitation cancelled, and does the body
    /// ask for what the snapshot that made the payment due said?
    fn request_flags(&self, s: &State, payload: u16) -> u8 {
        let Some(before) = self.world.fold(&s.ledger) else { return 0 };
        let What::Requested { receiver, amount, request, .. } = &self.world.payload(payload).what else { return 0 };
        let mut flags = 0;
        if before.status() == Some(&InvitationStatus::Cancelled) {
            flags |= request_flags::CANCELLED_BEFORE;
        }
        let right = match &before.payout.request {
            // A first request asks for the newest facts.
            None => (receiver.clone(), *amount) == facts(&before),
            // A retry asks for exactly what the first one did.
            Some(first) => serde_json::to_string(first).expect("JSON") == *request,
        };
        if !right {
            flags |= request_flags::WRONG_BODY;
        }
        flags
    }

    /// Whether an `obligation.in_doubt` decided at tick `at` for `reason`
    /// is what the ledger, as it stands, calls for: the obligation is in
    /// flight, and either no longer owed, or requested so long ago that a
    /// request sent now could reach a platform that forgot the key.
    fn in_doubt_called_for(&self, s: &State, reason: &str, at: u8) -> bool {
        let Some(before) = self.world.fold(&s.ledger) else { return false };
        let ob = &before.payout;
        let in_flight = matches!(ob.phase, ObligationPhase::Requested | ObligationPhase::RetryScheduled);
        in_flight
            && match reason {
                _ if reason == InDoubtReason::NoLongerDue.as_str() => !still_owed(&before, KIND),
                _ => ob
                    .window_started_at
                    .as_deref()
                    .and_then(tick_of)
                    .is_some_and(|start| u16::from(at) >= u16::from(start) + u16::from(self.bounds.window)),
            }
    }

    pub fn candidates(&self, s: &State, out: &mut Vec<Step>) {
        for n in 0..self.bounds.deliveries.len() as u8 {
            out.push(Step::Deliver(n));
        }
        out.extend([Step::Tick, Step::End, Step::Finish]);
        for i in 0..2u8 {
            out.extend([Step::Decide(i), Step::Append(i), Step::Record(i), Step::Acquire(i)]);
            for a in [Answer::Normal, Answer::LostAfter, Answer::FailBefore, Answer::Slow] {
                out.push(Step::Call(i, a));
            }
            out.extend([Step::Pause(i), Step::Resume(i), Step::Crash(i)]);
            for c in [Choice::Paid, Choice::PaidByHand, Choice::Retry, Choice::Failed] {
                out.push(Step::Look(i, c));
            }
            out.extend([Step::Resolve(i), Step::OperatorCrash(i)]);
        }
        if self.bounds.restores {
            for n in 0..s.ledger.len() as u8 {
                out.push(Step::Restore(n));
            }
        }
    }

    pub fn step(&self, last: &State, step: Step) -> Option<State> {
        let mut s = last.clone();
        match step {
            Step::Deliver(n) => {
                if s.delivered & (1 << n) != 0 || s.clock == END {
                    return None;
                }
                s.delivered |= 1 << n;
                let payload = self.world.webhook(self.bounds.deliveries[usize::from(n)]);
                // Webhooks are facts: appended unconditionally.
                self.append(&mut s, payload, None, 0);
            }
            Step::Tick => {
                if s.clock >= self.bounds.horizon
                    || s.recs.iter().any(|r| self.deadline(r).is_some_and(|d| d <= s.clock))
                {
                    return None;
                }
                s.clock += 1;
                self.forget(&mut s);
            }
            Step::End => {
                let all = (1u16 << self.bounds.deliveries.len()) - 1;
                if s.clock == END
                    || u16::from(s.delivered) != all
                    || matches!(s.key, Key::Processing { .. })
                    || s.recs.iter().any(|r| self.deadline(r).is_some())
                {
                    return None;
                }
                s.clock = END;
                self.forget(&mut s);
            }
            Step::Finish => {
                let Key::Processing { request, flags } = s.key else { return None };
                self.execute(&mut s, request, flags);
            }
            Step::Decide(i) => {
                let r = s.recs[usize::from(i)];
                if r.paused || r.epoch == 0 || r.pc != Pc::Idle {
                    return None;
                }
                let fresh = self.world.fold(&s.ledger)?;
                let payload = match next_action(&fresh, KIND, instant(s.clock), &self.world.caps) {
                    Action::Send { attempt } => self.world.requested(&fresh, attempt, s.clock)?,
                    Action::MarkInDoubt(reason) => self.world.in_doubt(&fresh, reason, s.clock),
                    Action::Nothing | Action::NotConfigured | Action::WaitUntil(_) => return None,
                };
                // Deciding right before the effect binds it to the clock
                // reading; a pass's decision taken long before does not.
                let deadline = self.guards.redecide.then_some(s.clock + 1);
                let window = fresh.payout.window_started_at.as_deref().and_then(tick_of);
                s.recs[usize::from(i)].pc = Pc::Decided { payload, version: s.version(), deadline, window };
            }
            Step::Append(i) => {
                let r = s.recs[usize::from(i)];
                let Pc::Decided { payload, version, deadline, window } = r.pc else { return None };
                if r.paused {
                    return None;
                }
                let what = self.world.payload(payload).what.clone();
                let flags = self.request_flags(&s, payload);
                let called_for = match what {
                    What::InDoubt { reason, at } => self.in_doubt_called_for(&s, reason, at),
                    _ => true,
                };
                s.recs[usize::from(i)].pc = Pc::Idle;
                match self.append(&mut s, payload, Some(version), r.epoch) {
                    Appended::New(recorded) => match what {
                        What::Requested { .. } => {
                            let deadline = deadline.unwrap_or(s.clock + 1);
                            s.recs[usize::from(i)].pc = Pc::Calling { payload, recorded, deadline, flags, window };
                        }
                        _ if !called_for => s.ghost |= ghost::BAD_IN_DOUBT,
                        _ => {}
                    },
                    // Recorded before: whoever recorded it makes the call.
                    Appended::Duplicate | Appended::Conflict => {}
                    Appended::Fenced => s.recs[usize::from(i)].epoch = 0,
                }
            }
            Step::Call(i, answer) => {
                let r = s.recs[usize::from(i)];
                let Pc::Calling { payload, recorded, flags, window, .. } = r.pc else { return None };
                if r.paused || (answer != Answer::Normal && !self.can_fault(&s)) {
                    return None;
                }
                let What::Requested { attempt, at, .. } = self.world.payload(payload).what else { unreachable!() };
                // As `send_once` before its call: not when the call could
                // reach the platform after the window (a long pause).
                let window = window.map(|w| rfc3339(instant(w)));
                if self.guards.call_check
                    && !may_call(window.as_deref(), instant(at), instant(s.clock), &self.world.caps)
                {
                    s.recs[usize::from(i)].pc = Pc::Idle;
                    return Some(s);
                }
                let outcome = match (s.key, answer) {
                    (Key::Unknown, Answer::Normal) => {
                        self.execute(&mut s, payload, flags);
                        answered(200)
                    }
                    (Key::Unknown, Answer::LostAfter) => {
                        self.execute(&mut s, payload, flags);
                        timed_out()
                    }
                    (Key::Unknown, Answer::Slow) => {
                        s.key = Key::Processing { request: payload, flags };
                        timed_out()
                    }
                    (Key::Done { request, .. }, Answer::Normal) => {
                        answered(if self.same_request(request, payload) { 200 } else { 422 })
                    }
                    (Key::Processing { .. }, Answer::Normal) => answered(409),
                    (Key::Unknown | Key::Done { .. }, Answer::FailBefore) => answered(503),
                    _ => return None,
                };
                if answer != Answer::Normal {
                    s.faults += 1;
                }
                let event = self.world.outcome(attempt, &outcome, s.clock);
                s.recs[usize::from(i)].pc =
                    Pc::Answered { payload: event, requested_seq: recorded.seq, version: recorded };
            }
            Step::Record(i) => {
                let r = s.recs[usize::from(i)];
                let Pc::Answered { payload, requested_seq, version } = r.pc else { return None };
                if r.paused {
                    return None;
                }
                s.recs[usize::from(i)].pc = Pc::Idle;
                match self.append(&mut s, payload, Some(version), r.epoch) {
                    Appended::New(_) | Appended::Duplicate => {}
                    Appended::Fenced => s.recs[usize::from(i)].epoch = 0,
                    Appended::Conflict => {
                        // As `append_decided` with `awaiting`: recorded once
                        // the newest facts show this request still awaits it.
                        // (An empty stream, after a restore: nothing awaits it.)
                        let Some(fresh) = self.world.fold(&s.ledger) else { return Some(s) };
                        let ob = &fresh.payout;
                        let open = !matches!(ob.phase, ObligationPhase::Succeeded | ObligationPhase::Failed);
                        if ob.requested_seq == Some(u64::from(requested_seq)) && open {
                            s.recs[usize::from(i)].pc = Pc::Answered { payload, requested_seq, version: s.version() };
                        }
                    }
                }
            }
            Step::Acquire(i) => {
                let r = s.recs[usize::from(i)];
                if s.lease_live || r.paused || r.epoch != 0 {
                    return None;
                }
                s.granted += 1;
                s.holder = Some(i);
                s.lease_live = true;
                s.recs[usize::from(i)].epoch = s.granted;
            }
            Step::Pause(i) => {
                let r = s.recs[usize::from(i)];
                if r.paused || r.epoch == 0 || !self.can_fault(&s) {
                    return None;
                }
                s.faults += 1;
                s.recs[usize::from(i)].paused = true;
                if s.holder == Some(i) {
                    s.lease_live = false;
                }
            }
            Step::Resume(i) => {
                if !s.recs[usize::from(i)].paused {
                    return None;
                }
                s.recs[usize::from(i)].paused = false;
                if s.holder == Some(i) {
                    // Nobody took the lapsed lock: its heartbeat renews it.
                    s.lease_live = true;
                }
            }
            Step::Crash(i) => {
                let r = s.recs[usize::from(i)];
                if !self.can_fault(&s) || (r.pc == Pc::Idle && r.epoch == 0 && !r.paused) {
                    return None;
                }
                s.faults += 1;
                s.recs[usize::from(i)] = Rec { epoch: 0, paused: false, pc: Pc::Idle };
                if s.holder == Some(i) {
                    s.holder = None;
                    s.lease_live = false;
                }
            }
            Step::Look(i, choice) => {
                // Operators are alike (kept in order): the first idle one looks.
                let first_idle = i == 0 || s.ops[usize::from(i) - 1] != Op::Idle;
                if s.ops[usize::from(i)] != Op::Idle || !first_idle || matches!(s.key, Key::Processing { .. }) {
                    return None;
                }
                if self.bounds.operators_wait_for_calls && s.recs.iter().any(|r| matches!(r.pc, Pc::Calling { .. })) {
                    return None;
                }
                let fresh = self.world.fold(&s.ledger)?;
                if !matches!(obligation(&fresh, KIND).state, ObligationState::InDoubt | ObligationState::Failed) {
                    return None;
                }
                // Operators tell the truth about what the platform shows,
                // and wait while it still processes the key.
                let allowed = match choice {
                    Choice::Paid => s.executions > 0,
                    Choice::PaidByHand => s.executions == 0 && due(&fresh, KIND).is_ok(),
                    Choice::Retry | Choice::Failed => s.executions == 0,
                };
                if !allowed {
                    return None;
                }
                let decision = match choice {
                    Choice::Paid | Choice::PaidByHand => Decision::Paid,
                    Choice::Retry => Decision::Retry,
                    Choice::Failed => Decision::Failed,
                };
                let payload = self.world.resolved(&fresh, decision, s.clock);
                s.ops[usize::from(i)] =
                    Op::Decided { payload, seen: s.version(), by_hand: choice == Choice::PaidByHand };
            }
            Step::Resolve(i) => {
                let Op::Decided { payload, seen, by_hand } = s.ops[usize::from(i)] else { return None };
                s.ops[usize::from(i)] = Op::Done;
                match self.append(&mut s, payload, Some(seen), 0) {
                    Appended::New(_) if by_hand => s.by_hand += 1,
                    Appended::Conflict => s.ghost |= ghost::OPERATOR_REFUSED,
                    _ => {}
                }
            }
            Step::OperatorCrash(i) => {
                if !matches!(s.ops[usize::from(i)], Op::Decided { .. }) || !self.can_fault(&s) {
                    return None;
                }
                s.faults += 1;
                s.ops[usize::from(i)] = Op::Done;
            }
            Step::Restore(n) => {
                if !self.bounds.restores || !self.can_fault(&s) || usize::from(n) >= s.ledger.len() {
                    return None;
                }
                let lost = s.ledger[usize::from(n)..].iter().any(|e| e.tag & (tag::REQUESTED | tag::RESOLVED) != 0);
                let received = s.executions + s.by_hand > 0 || matches!(s.key, Key::Processing { .. });
                if lost && received {
                    s.ghost |= ghost::RESTORE_LOST_PAYMENT;
                }
                s.faults += 1;
                s.ledger.truncate(usize::from(n));
                for r in &mut s.recs {
                    if let Pc::Calling { recorded, ref mut flags, .. } = r.pc {
                        if recorded.seq > n {
                            *flags |= request_flags::RECORD_LOST;
                        }
                    }
                }
                if self.bounds.restore_restarts {
                    s.recs = [Rec { epoch: 0, paused: false, pc: Pc::Idle }; 2];
                    s.holder = None;
                    s.lease_live = false;
                }
                if !self.bounds.pages_survive_restore {
                    for op in &mut s.ops {
                        if matches!(op, Op::Decided { .. }) {
                            *op = Op::Idle;
                        }
                    }
                }
            }
        }
        // The two operators are alike: which of them did what does not
        // matter, so their states are kept in order (a symmetry reduction;
        // a trace names each by its place in that order).
        s.ops.sort_unstable();
        // So are the two reconcilers: kept in order, the lock's holder
        // following its own.
        let rank = |s: &State, i: u8| (s.recs[usize::from(i)], s.holder == Some(i));
        if rank(&s, 1) < rank(&s, 0) {
            s.recs.swap(0, 1);
            s.holder = s.holder.map(|h| 1 - h);
        }
        Some(s)
    }

    /// No step is possible: the world has run its course.
    pub fn quiescent(&self, s: &State) -> bool {
        let mut steps = Vec::new();
        self.candidates(s, &mut steps);
        steps.into_iter().all(|step| self.step(s, step).is_none())
    }

    /// The obligation is settled or owes nothing: succeeded, failed, in
    /// doubt (an operator's now), or not due at all.
    pub fn settled(&self, s: &State) -> bool {
        self.world.fold(&s.ledger).is_none_or(|f| {
            !matches!(
                obligation(&f, KIND).state,
                ObligationState::Pending | ObligationState::Requested | ObligationState::RetryScheduled
            )
        })
    }
}
