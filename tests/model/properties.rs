//! The properties the checker proves of every reachable state (`always`),
//! of every complete run (`eventually`), and the situations it must reach
//! at least once (`sometimes`), so that a green check is not a vacuous one.

use stateright::{Model, Property};

use super::state::{ghost, State};
use super::steps::{Protocol, Step};
use super::world::tag;

pub const AT_MOST_ONCE: &str = "at most one effective payment per obligation";
pub const RIGHT_BODY: &str = "every payment goes to the receiver and amount of the snapshot that made it due";
pub const NOT_CANCELLED: &str = "nothing is paid for an invitation cancelled before the request";
pub const NOT_DEPOSED: &str = "nothing is recorded under a deposed epoch";
pub const IN_DOUBT_ONLY_WHEN: &str =
    "an obligation goes in doubt only when the platform may have forgotten its key or it is no longer due";
pub const BOUNDED: &str = "the ledger stays short: nothing is re-sent without end";
/// Longer than any run of the protocol in the bounds checked; a ledger
/// this long means a loop, and is not explored further.
pub const MAX_LEDGER: usize = 24;
pub const SETTLES: &str = "every due obligation ends succeeded, failed or in doubt";

/// The `always` properties, by name: what a guard's test may expect to fail.
pub const SAFETY: [&str; 6] = [AT_MOST_ONCE, RIGHT_BODY, NOT_CANCELLED, NOT_DEPOSED, IN_DOUBT_ONLY_WHEN, BOUNDED];

/// Situations a check must reach, or it proves little.
pub const REACHED: [&str; 8] = [
    "a payment succeeds",
    "a payment goes in doubt because its window expired",
    "a payment goes in doubt because it is no longer due",
    "an operator's decision is recorded",
    "an operator's contradictory decision is refused",
    "a deposed reconciler's append is refused",
    "the platform answers 409 while it processes the key",
    "the platform forgets a key it executed",
];

fn ledger_has(s: &State, bits: u8) -> bool {
    s.ledger.iter().any(|e| e.tag & bits != 0)
}

impl Model for Protocol {
    type State = State;
    type Action = Step;

    fn init_states(&self) -> Vec<State> {
        vec![State::initial()]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Step>) {
        self.candidates(state, actions);
    }

    fn next_state(&self, last: &State, action: Step) -> Option<State> {
        self.step(last, action)
    }

    fn within_boundary(&self, state: &State) -> bool {
        state.ledger.len() <= MAX_LEDGER
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let all = vec![
            Property::always(AT_MOST_ONCE, |_, s: &State| {
                // A platform execution and a payment by hand each move
                // money; a restore that lost an executed request is the
                // documented limit (see `ghost::RESTORE_LOST_PAYMENT`).
                s.executions + s.by_hand <= 1 || s.ghost & ghost::RESTORE_LOST_PAYMENT != 0
            }),
            Property::always(RIGHT_BODY, |_, s: &State| s.ghost & ghost::WRONG_BODY == 0),
            Property::always(NOT_CANCELLED, |_, s: &State| s.ghost & ghost::PAID_AFTER_CANCEL == 0),
            Property::always(NOT_DEPOSED, |_, s: &State| s.ghost & ghost::DEPOSED_RECORD == 0),
            Property::always(IN_DOUBT_ONLY_WHEN, |_, s: &State| s.ghost & ghost::BAD_IN_DOUBT == 0),
            // Every path is finite (faults are bounded, time ends, every
            // step grows the ledger or moves an actor on), so every run
            // ends in a state where nothing can happen any more: the
            // property holds there, and only there.
            Property::eventually(SETTLES, |m: &Protocol, s: &State| m.settled(s) && m.quiescent(s)),
            Property::sometimes(REACHED[0], |_, s: &State| ledger_has(s, tag::SUCCEEDED)),
            Property::sometimes(REACHED[1], |_, s: &State| ledger_has(s, tag::IN_DOUBT_WINDOW)),
            Property::sometimes(REACHED[2], |_, s: &State| ledger_has(s, tag::IN_DOUBT_NO_LONGER_DUE)),
            Property::sometimes(REACHED[3], |_, s: &State| ledger_has(s, tag::RESOLVED)),
            Property::sometimes(REACHED[4], |_, s: &State| s.ghost & ghost::OPERATOR_REFUSED != 0),
            Property::sometimes(REACHED[5], |_, s: &State| s.ghost & ghost::FENCED != 0),
            Property::sometimes(REACHED[6], |_, s: &State| ledger_has(s, tag::ANSWERED_409)),
            Property::sometimes(REACHED[7], |_, s: &State| s.executions > 0 && s.key == super::state::Key::Unknown),
            Property::always(BOUNDED, |_, s: &State| s.ledger.len() < MAX_LEDGER),
        ];
        match &self.only {
            None => all,
            Some(names) => all.into_iter().filter(|p| names.contains(&p.name)).collect(),
        }
    }
}
