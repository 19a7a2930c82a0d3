//! The campaign database's queries, one module per feature, each function taking a pool or a
//! connection and returning typed rows read by column name.

pub mod schedule;
