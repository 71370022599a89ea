//! Architecture support. Only x86-64 exists; portable code uses what this module re-exports.
pub mod x86;
