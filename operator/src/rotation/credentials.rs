//! What the credentials Secret (`<name>-credentials`, what workloads mount) may hold: a token
//! only beside the certificate it is bound to. The Secret moves to a new certificate only
//! together with tokens bound to it ([`super::Action::RefreshTokens`]); any other write of it
//! (a key activation) keeps the certificate its tokens are bound to. Pure, no I/O.

use super::model::Observed;

/// The thumbprint of the certificate the credentials Secret must hold: the one its tokens are
/// bound to while it holds any, otherwise the current certificate.
pub fn credentials_certificate(seen: &Observed) -> Option<&str> {
    seen.tokens
        .first()
        .map(|t| t.cert_x5t_s256.as_str())
        .or(seen.certificate.as_ref().map(|c| c.x5t_s256.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::tests::fixtures::{at, cert, steady};

    #[test]
    fn the_credentials_keep_the_certificate_their_tokens_are_bound_to() {
        let mut seen = steady();
        seen.certificate = Some(cert("c2", at(0), at(100)));
        assert_eq!(credentials_certificate(&seen), Some("c1"));
    }

    #[test]
    fn credentials_without_tokens_take_the_current_certificate() {
        let mut seen = steady();
        seen.tokens.clear();
        seen.certificate = Some(cert("c2", at(0), at(100)));
        assert_eq!(credentials_certificate(&seen), Some("c2"));
    }
}
