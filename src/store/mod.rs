//! The campaign database's queries, one module per part of the tool that needs them. Each
//! function takes a pool or a connection and returns typed rows read by column name, so a query
//! and the struct it fills are read side by side.

pub mod helpline;
