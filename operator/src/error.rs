//! The operator's error type: every failure named, classified transient or permanent.
