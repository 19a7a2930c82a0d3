//! `bounces`: reads what came back after the letters went out, and records it.
//!
//! `mailbox` streams raw messages out of mbox files, maildir folders and .eml files; `parse`
//! turns one into a classified bounce (hard, soft, auto-reply, not a bounce) with its recipients;
//! `ingest` matches each recipient report to a delivery and records it through the ledger, so a
//! hard bounce marks the delivery `bounced` and nothing is counted twice.

pub mod ingest;
pub mod mailbox;
pub mod parse;

pub use ingest::{Summary, run};
