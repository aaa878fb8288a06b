//! The test kit shared by every test tier of tpp-operator (docs/architecture.md): one throw-away
//! PKI ([`pki`]) for the control plane, the sandbox AS, the oidc-provider peer, the loopback tests
//! and the benchmarks. It depends on no crate of the workspace, so the operator takes it as a
//! dev-dependency and the sandbox AS as a dependency without a cycle.

pub mod pki;
