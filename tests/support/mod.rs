//! Shared pieces of the integration tests: a throwaway campaign driven through the real binary,
//! and an SMTP server on loopback that fails on purpose.

pub mod campaign;
pub mod smtp_server;
