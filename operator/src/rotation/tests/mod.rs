//! Tests of the rotation planner.
