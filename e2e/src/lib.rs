//! e2e harness

pub mod sandbox;
