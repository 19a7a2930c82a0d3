//! breachmail: tells every person hit by a personal-data breach what happened to their data, by
//! e-mail, one personalised letter each (GDPR Art. 34).
//!
//! The data flows one way through one module per stage: `import` loads people into the campaign
//! database, `render` turns a person into the exact message, `transport` hands it to a relay (or a
//! folder), `send` schedules and records, `bounces` reads what came back, `report` and `export`
//! show the evidence. `ledger` is the one place where a delivery changes state, and it writes the
//! event that records the change in the same statement batch.

pub mod bounces;
pub mod check;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod console;
pub mod db;
pub mod demo;
pub mod dkim;
pub mod dns;
pub mod domain;
pub mod duration;
pub mod exit;
pub mod export;
pub mod files;
pub mod helpline_text;
pub mod html;
pub mod imap_url;
pub mod import;
pub mod init;
pub mod lease;
pub mod lookup;
pub mod loopback;
pub mod message;
pub mod pacing;
pub mod person;
pub mod pipeline;
pub mod plan;
pub mod postal;
pub mod preview;
pub mod purge;
pub mod render;
pub mod report;
pub mod resend;
pub mod schedule;
pub mod send;
pub mod smtp_reply;
pub mod status;
pub mod store;
/// The delivery life cycle, from [`store::ledger`]: kept under its old name for the callers.
pub use store::ledger;
pub mod tls;
pub mod transport;
pub mod verp;

/// The paths of before the ground floor had a module of its own.
pub use exit::{Exit, UsageError, print_err, print_out};

/// Runs one command line (see [`commands`]); the binary's `main` is only this.
pub use commands::main_with;
