//! A throw-away PKI for one test run (docs/test-infrastructure.md A6): the tests' one test PKI,
//! crate `tpp-testkit` — a test CA, the apiserver's serving certificate, an admin client
//! certificate (`O=system:masters`), a ServiceAccount signing key, further client or server
//! certificates from the same CA. CPU only.

pub use tpp_testkit::pki::{CertPair, TestCa, dn, self_signed_client, service_account_key};
