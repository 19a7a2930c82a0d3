//! `send`: the cron job. Claims what is due, renders, paces, sends, records, exits.
//!
//! The pipeline, one way: the dispatcher claims batches of due deliveries (one statement moves
//! them to `sending`), holds them in per-domain queues, and releases each one when the global and
//! per-domain rate limiters allow; `smtp.max_connections` workers each own one relay session,
//! build the message and hand it over; one writer records the outcomes in batched transactions.
//! Memory holds at most a few batches, whatever the number of people.
//!
//! Anything claimed but not attempted (the run stops, the relay cannot be reached, a letter does
//! not render) is released to the state it came from without counting an attempt. A run that
//! dies leaves its in-flight deliveries in `sending`; the next run sends them again and flags
//! those its hand-over journal (`handovers`) names as possible duplicates.
//!
//! The parts, in the order a letter meets them:
//! - `run`: set-up and tear-down (window, disk, lease, recovery, summary, exit code);
//! - `signals`: SIGTERM and SIGINT; `halt`: the lease clock and what stops every part at once;
//! - `dispatcher`: the loop that claims, prepares and hands out, over `queues` (per domain)
//!   and `lanes` (per relay), paced by [`crate::pacing`];
//! - `worker`: one relay session each, journaling each hand-over first (`handovers`);
//! - `decide`: the relay's verdict to the ledger's outcome, pure;
//! - `writer`: the outcomes in batched transactions, and the run's totals from what it
//!   committed; `progress`: what the operator sees meanwhile.

mod decide;
mod dispatcher;
mod halt;
mod handovers;
mod lanes;
mod progress;
mod queues;
mod run;
mod signals;
mod worker;
mod writer;

pub use run::run;
