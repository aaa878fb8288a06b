//! The time source of the oauth client: the crate-wide [`crate::clock`], re-exported so the
//! oauth API reads on its own. No I/O.

pub use crate::clock::{Clock, SystemClock};
