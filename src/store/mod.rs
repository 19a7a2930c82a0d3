//! The store: every SQL statement of the campaign database lives below this module (the schema
//! itself is in `migrations/`). Callers get typed rows, read by column name, and state changes
//! that either happen with their event or report that they did not.
//!
//! - [`bounces`]: what matching a bounce reads (Message-IDs, notice ids, addresses, states).
//! - [`confirmation`]: past the relay: letters accepted by the providers, still at the relay,
//!   or sent through a relay that confirms nothing, and how long the providers took.
//! - [`campaign`]: the signing key, the runs, the one-sender lease, the schema version.
//! - [`deliveries`]: the reads of check, preview, the exports and resend, by typed selection.
//! - [`extract`]: the SQLite extract an import may read people from (another database).
//! - [`ledger`]: people and the delivery life cycle (import, claim, outcomes, bounces, resends),
//!   each transition checked against the from-states of [`crate::domain::Transition`].
//! - [`helpline`]: what the advisers' console reads and records (accounts, sessions, the
//!   access log, call notes).
//! - [`mailbox`]: where the bounce mailbox was read up to (UIDVALIDITY, last UID), complaints.
//! - [`relay`]: which relay took each letter, and what each run slowed and why.
//! - [`schedule`]: the campaign's days (letters sent per day and per domain) for the caps.
//! - [`report`]: what the HTML report adds: letters sent over time, runs, letter versions.
//! - [`status`]: the counts `status` shows (states, runs, reasons, domains, what is left).
//! - [`people`]: the columns of a person, as the letters and the import read them.
//! - [`purge`]: erasing the people after the campaign, keeping the evidence.

pub mod bounces;
pub mod campaign;
pub mod confirmation;
pub mod deliveries;
pub mod dns;
pub mod extract;
pub mod helpline;
pub mod ledger;
pub mod mailbox;
pub mod people;
pub mod purge;
pub mod relay;
pub mod report;
pub mod schedule;
pub mod status;

/// A state change that did not happen because the delivery is no longer where the caller read
/// it: another run took it over, or a bounce or a resend moved it on. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("delivery of person {person_id} is no longer {expected} for this run: nothing written")]
pub struct Stale {
    pub person_id: i64,
    pub expected: &'static str,
}
