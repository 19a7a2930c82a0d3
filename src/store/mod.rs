//! The SQL of the campaign's database, one module per feature, so that every query can be found
//! (and its columns read by name) in one place.

pub mod relay;
