//! What the integration tests share: a throwaway campaign made by the real `init` and driven
//! through the real binary, with its database opened to check what was stored; the project's test
//! files and helpers to look at the files a run leaves; and an SMTP server on loopback that fails
//! on purpose, and an IMAP stand-in holding a bounce mailbox; the helpline console on loopback with an HTTP client.
//!
//! Every test file includes this module with `mod support;` and uses a different part of it.
#![allow(dead_code)]

pub mod campaign;
pub mod console;
pub mod files;
pub mod imap_server;
pub mod smtp_server;
