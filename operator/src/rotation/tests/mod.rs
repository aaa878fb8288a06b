//! Tests of the rotation planner: unit tests per trigger, then property tests driving the
//! planner through a simulated reconciler.

mod certificate;
pub(super) mod fixtures;
mod floors;
mod keys;
mod plan;
mod registration;
mod self_test;
mod simulation;
mod tokens;
