//! The agent of a Linux AppVM (the binary is `src/main.rs`): its parts, host-tested.

pub mod channel;
pub mod config;
pub mod net;
pub mod service;
