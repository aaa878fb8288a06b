//! The command line (clap). kubectl runs `kubectl-tpp` for `kubectl tpp ...` and passes every
//! argument after `tpp`, so the usual `-n`, `--context` and `--kubeconfig` are our own flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kubectl plugin for tpp-operator.
#[derive(Debug, Parser)]
#[command(name = "kubectl tpp", version, about, propagate_version = true)]
pub struct Cli {
    /// Namespace of the TppClients (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A readable summary of a TppClient (or of every one in the namespace): conditions,
    /// client id, certificate and key dates, pending kids, next token refresh, history.
    Status(StatusArgs),
    /// Refresh every token now (annotation tpp.dev/renew-tokens).
    Renew(VerbArgs),
    /// Start a signing-key rotation now (annotation tpp.dev/rotate-keys).
    Rotate(VerbArgs),
    /// Renew the transport certificate now (annotation tpp.dev/renew-certificate).
    RenewCertificate(VerbArgs),
    /// Allow another round of registration attempts after RegistrationOutcomeUnknown, once the
    /// AS was checked for the clients earlier attempts may have left (annotation
    /// tpp.dev/retry-registration).
    RetryRegistration(VerbArgs),
    /// Show the kids waiting for approval with their JWK thumbprints, then approve them
    /// (annotation tpp.dev/approved-kids).
    Approve(ApproveArgs),
    /// Print the client's published JWK set (public keys only).
    Jwks(NameArgs),
    /// Fetch an authorization server's discovery document and run the FAPI 2.0 preflight on
    /// it, without creating anything.
    Preflight(PreflightArgs),
}

/// `status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The TppClient (default: every TppClient in the namespace).
    pub name: Option<String>,
    /// How many history entries to show.
    #[arg(long, default_value_t = 5)]
    pub history: usize,
}

/// Arguments of the annotation verbs.
#[derive(Debug, Args)]
pub struct VerbArgs {
    /// TppClients to act on.
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
    /// Act on every TppClient in the namespace.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
}

/// `approve` arguments.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The TppClient.
    pub name: String,
    /// Approve only these kids (default: every pending kid).
    #[arg(long = "kid")]
    pub kids: Vec<String>,
    /// Approve without asking (after printing the kids and thumbprints).
    #[arg(short, long)]
    pub yes: bool,
}

/// A single TppClient.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The TppClient.
    pub name: String,
}

/// `preflight` arguments: what a TppClient would use at this AS.
#[derive(Debug, Args)]
pub struct PreflightArgs {
    /// The issuer, exactly as the discovery document states it (https://...).
    pub issuer: String,
    /// PEM bundle of the CAs trusted for the AS's TLS server (the AuthorizationServer's
    /// caBundle).
    #[arg(long)]
    pub ca: PathBuf,
    /// Fetch the discovery document from here instead of the issuer's /.well-known/openid-configuration.
    #[arg(long)]
    pub discovery_url: Option<String>,
    /// Token endpoint authentication method.
    #[arg(long, value_enum, default_value_t = AuthMethodArg::PrivateKeyJwt)]
    pub auth_method: AuthMethodArg,
    /// Client assertion signing algorithm (private_key_jwt).
    #[arg(long, value_enum, default_value_t = AlgArg::PS256)]
    pub alg: AlgArg,
    /// Registration mode (all but Static need a registration endpoint).
    #[arg(long, value_enum, default_value_t = ModeArg::Static)]
    pub registration: ModeArg,
    /// `FAPI2` also checks certificate-bound tokens and PAR; `None` only what the client needs.
    #[arg(long, value_enum, default_value_t = ProfileArg::FAPI2)]
    pub profile: ProfileArg,
}

/// Token endpoint authentication methods.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AuthMethodArg {
    /// A signed client assertion.
    #[value(name = "private_key_jwt")]
    PrivateKeyJwt,
    /// The mTLS certificate's subject DN.
    #[value(name = "tls_client_auth")]
    TlsClientAuth,
}

/// Signing algorithms.
#[derive(Debug, Clone, Copy, ValueEnum)]
#[allow(clippy::upper_case_acronyms)]
pub enum AlgArg {
    /// RSASSA-PSS SHA-256.
    #[value(name = "PS256")]
    PS256,
    /// ECDSA P-256 SHA-256.
    #[value(name = "ES256")]
    ES256,
}

/// Registration modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// RFC 7591.
    #[value(name = "Dynamic")]
    Dynamic,
    /// OBIE-style signed registration.
    #[value(name = "SignedRequest")]
    SignedRequest,
    /// Ozone hub onboarding.
    #[value(name = "HubOnboarding")]
    HubOnboarding,
    /// Client id issued out of band.
    #[value(name = "Static")]
    Static,
}

/// Preflight profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(clippy::upper_case_acronyms)]
pub enum ProfileArg {
    /// FAPI 2.0 security profile.
    #[value(name = "FAPI2")]
    FAPI2,
    /// Only what the client needs.
    #[value(name = "None")]
    None,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn verbs_need_a_name_or_all() {
        assert!(Cli::try_parse_from(["kubectl-tpp", "renew"]).is_err());
        assert!(Cli::try_parse_from(["kubectl-tpp", "renew", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["kubectl-tpp", "renew", "a", "--all"]).is_err());
        assert!(Cli::try_parse_from(["kubectl-tpp", "retry-registration"]).is_err());
        assert!(matches!(
            Cli::try_parse_from(["kubectl-tpp", "retry-registration", "a"])
                .unwrap()
                .command,
            Command::RetryRegistration(_)
        ));
        let cli = Cli::try_parse_from(["kubectl-tpp", "rotate", "a", "b", "-n", "bank"]).unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("bank"));
        assert!(
            matches!(cli.command, Command::Rotate(VerbArgs { ref names, .. }) if names == &["a", "b"])
        );
    }

    #[test]
    fn preflight_needs_a_ca_bundle() {
        assert!(Cli::try_parse_from(["kubectl-tpp", "preflight", "https://as"]).is_err());
        let cli = Cli::try_parse_from([
            "kubectl-tpp",
            "preflight",
            "https://as",
            "--ca",
            "ca.pem",
            "--registration",
            "Dynamic",
            "--auth-method",
            "tls_client_auth",
        ])
        .unwrap();
        let Command::Preflight(p) = cli.command else {
            panic!("not preflight")
        };
        assert_eq!(p.registration, ModeArg::Dynamic);
        assert!(matches!(p.auth_method, AuthMethodArg::TlsClientAuth));
    }
}
