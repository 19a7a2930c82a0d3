//! The SQL of the campaign database, one module per subject, each function taking a pool or a
//! connection and returning typed rows read by column name.

pub mod mailbox;
