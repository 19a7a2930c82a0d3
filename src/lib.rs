//! breachmail: tells every person hit by a personal-data breach what happened to their data, by
//! e-mail, one personalised letter each (GDPR Art. 34).
//!
//! The data flows one way through one module per stage: `import` loads people into the campaign
//! database, `render` turns a person into the exact message, `transport` hands it to a relay (or a
//! folder), `send` schedules and records, `bounces` reads what came back, `report` and `export`
//! show the evidence. `store::ledger` is the one place where a delivery changes state, and it
//! writes the event that records the change in the same statement batch.
//!
//! The modules are floors: `exit` (exit codes, usage errors, the printers) is the ground floor and
//! uses nothing of the crate; `commands`, the dispatcher, is the top floor and nothing uses it; no
//! module imports one that imports it back (tests/module_layers.rs). This file only declares them.

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
pub mod tls;
pub mod transport;
pub mod verp;
