//! The ledger: the one place where people are written and deliveries change state.
//!
//! Every function here changes `deliveries` and appends the matching rows to `events` inside the
//! caller's transaction, so the state and its evidence can never disagree: each state change is a
//! [`crate::domain::Transition`] applied by one helper (`transition`, private to the ledger),
//! `UPDATE … WHERE state IN (from-states)` with its event only for the rows it changed. Bulk
//! changes (claiming a batch, importing a batch, recording a batch of accepted letters) are
//! single set-based statements, so they cost one round trip per batch, not per person.
//!
//! Behind this facade:
//! - `people`: an import's new people, the people it saw again, `import --update`.
//! - `claim`: claims for a send run, the hand-over mark, the recovery of a dead run's claims.
//! - `outcomes`: what became of each claimed delivery, with the relay's reply.
//! - `bounces`: bounce reports, hard bounces, a provider's acceptance, the notes they give.
//! - `resend`: a new generation of a letter.
//! - `notes`: notes that change no state (the relay's after the letter left, an adviser's).

mod bounces;
mod claim;
mod notes;
mod outcomes;
mod people;
mod resend;
#[cfg(test)]
mod testing;
mod transition;

pub use bounces::{
    Acceptance, BounceRecord, Temporary, mark_bounced, mark_delivered, note_temporary,
    record_bounce, record_complaint,
};
pub use claim::{Claimed, claim, count_still_to_send, mark_handed_over, recover_abandoned};
pub use notes::{AdviserNote, note_adviser};
pub use outcomes::{Outcome, record_outcomes, record_outcomes_in};
pub use people::{insert_people, touch_people, update_person};
pub use resend::{NewGeneration, start_new_generation};
