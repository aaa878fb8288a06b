//! `Sensitive<T>`: a value that is serialised as itself (it must reach a Secret) but never shows
//! in `Debug` or `Display`, so that logs, events, errors and status cannot carry it by accident.
//! Reading it is an explicit, greppable `.expose()`. No I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Secret material (a private key, a token, a registration access token).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    /// Wrap a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value, for the one place that must use it (a Secret builder, an HTTP request).
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwrap.
    pub fn into_exposed(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<String> for Sensitive<String> {
    fn from(s: String) -> Self {
        Self(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Sensitive::new("eyJhbGciOiJQUzI1NiJ9.secret".to_owned());
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([REDACTED])");
    }

    #[test]
    fn serialises_transparently_for_the_secret_it_belongs_in() {
        let s = Sensitive::new("tok".to_owned());
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"tok\"");
        let back: Sensitive<String> = serde_json::from_str("\"tok\"").unwrap();
        assert_eq!(back.expose(), "tok");
    }
}
