//! `bounces`: reads what came back after the letters went out, and records it.
//!
//! `mailbox` streams raw messages out of mbox files, maildir folders and .eml files, and `imap`
//! reads them from the bounce mailbox over IMAP; `parse` turns one into a classified message
//! (hard, soft, delayed, complaint, auto-reply, reply, not a bounce) with its recipients;
//! `ingest` matches each recipient report to a delivery and records it through the ledger, so a
//! hard bounce marks the delivery `bounced` and nothing is counted twice.

pub mod imap;
pub mod ingest;
pub mod mailbox;
pub mod parse;

pub use ingest::{Summary, run, run_command};
