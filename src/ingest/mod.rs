//! Ingesting an uploaded CSV: the per-row rules and the streaming reader (pure logic, no I/O
//! beyond `std::io::Read`). The worker (`crate::worker`) stages what the reader yields and
//! judges the set rules (duplicates, existing codes, maxCreate) in SQL.

pub mod reader;
pub mod rules;
pub mod seen;
