//! `kubectl tpp preflight ISSUER --ca FILE`: what the operator checks before it registers a
//! client, run from a laptop against a real discovery document. The document is fetched as
//! the operator fetches it (`tpp_operator::oauth::discovery::fetch`: only the given CAs are
//! trusted, the issuer must match byte for byte) and checked by the operator's own FAPI 2.0
//! preflight (`tpp_operator::oauth::preflight`). Nothing is created anywhere: no Kubernetes
//! access, one GET to the AS. Exit code 0: no error finding; 1: error findings; 2: the
//! document could not be fetched or is not the issuer's.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::{Context, Result};
use tpp_operator::oauth::{
    AsClient, ClientNeeds, EndpointKind, Finding, ProviderMetadata, Severity, TransportConfig,
    discovery, discovery_url, preflight,
};

use crate::cli::{AlgArg, AuthMethodArg, ModeArg, PreflightArgs, ProfileArg};

/// What a TppClient with these settings needs from the AS.
pub fn needs(args: &PreflightArgs) -> ClientNeeds {
    ClientNeeds {
        auth_method: match args.auth_method {
            AuthMethodArg::PrivateKeyJwt => "private_key_jwt",
            AuthMethodArg::TlsClientAuth => "tls_client_auth",
        }
        .into(),
        signing_alg: match args.alg {
            AlgArg::PS256 => "PS256",
            AlgArg::ES256 => "ES256",
        }
        .into(),
        grant: "client_credentials".into(),
        registration_endpoint: args.registration != ModeArg::Static,
        fapi2: args.profile == ProfileArg::FAPI2,
    }
}

/// The report on a fetched document, and the exit code.
pub fn report(
    args: &PreflightArgs,
    url: &str,
    meta: &ProviderMetadata,
    findings: &[Finding],
) -> (String, u8) {
    let mut out = String::new();
    let list = |v: &[String]| {
        if v.is_empty() {
            "(not advertised)".to_owned()
        } else {
            v.join(", ")
        }
    };
    let endpoint = |k: EndpointKind| {
        let plain = meta.endpoint(k);
        let mtls = meta.effective_endpoint(k, true);
        match (plain, mtls) {
            (None, None) => "(none)".to_owned(),
            (Some(p), Some(m)) if p != m => format!("{p} (mTLS alias {m})"),
            (p, m) => p.or(m).unwrap_or_default().to_owned(),
        }
    };
    let _ = writeln!(out, "Discovery document {url}");
    let _ = writeln!(out, "  issuer                {} (matches)", meta.issuer);
    for (label, kind) in [
        ("token endpoint", EndpointKind::Token),
        ("registration endpoint", EndpointKind::Registration),
        ("PAR endpoint", EndpointKind::PushedAuthorizationRequest),
        ("introspection", EndpointKind::Introspection),
        ("revocation", EndpointKind::Revocation),
    ] {
        let _ = writeln!(out, "  {label:<21} {}", endpoint(kind));
    }
    let _ = writeln!(
        out,
        "  auth methods          {}",
        list(&meta.token_endpoint_auth_methods_supported)
    );
    let _ = writeln!(
        out,
        "  assertion algorithms  {}",
        list(&meta.token_endpoint_auth_signing_alg_values_supported)
    );
    let _ = writeln!(
        out,
        "  grant types           {}",
        list(&meta.grant_types_supported)
    );
    let _ = writeln!(
        out,
        "  cert-bound tokens     {}",
        meta.tls_client_certificate_bound_access_tokens
            .map_or("(not advertised)".into(), |b| b.to_string())
    );
    let _ = writeln!(
        out,
        "  PAR required          {}",
        meta.require_pushed_authorization_requests
            .map_or("(not advertised)".into(), |b| b.to_string())
    );
    let n = needs(args);
    let _ = writeln!(
        out,
        "\nPreflight ({:?} profile) for a {:?} client using {}{}:",
        args.profile,
        args.registration,
        n.auth_method,
        if n.auth_method == "private_key_jwt" {
            format!(" with {}", n.signing_alg)
        } else {
            String::new()
        }
    );
    let errors = findings
        .iter()
        .filter(|f| f.severity() == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    if findings.is_empty() {
        let _ = writeln!(out, "  nothing missing");
    }
    for f in findings {
        let tag = match f.severity() {
            Severity::Error => "ERROR  ",
            Severity::Warning => "WARNING",
        };
        let _ = writeln!(out, "  {tag} {f}");
    }
    let verdict = if errors == 0 { "PASS" } else { "FAIL" };
    let _ = writeln!(
        out,
        "\n{verdict}: {errors} error(s), {warnings} warning(s). Nothing was created."
    );
    (out, u8::from(errors > 0))
}

/// Fetch, check and print.
pub async fn run(args: &PreflightArgs, out: &mut impl Write) -> Result<u8> {
    let ca = std::fs::read(&args.ca).with_context(|| format!("read {}", args.ca.display()))?;
    let http = AsClient::new(&TransportConfig::new(ca), None).context("TLS client")?;
    let url = discovery_url(&args.issuer, args.discovery_url.as_deref())?;
    let meta = match discovery::fetch(&http, url.clone(), &args.issuer).await {
        Ok(m) => m,
        Err(e) => {
            writeln!(out, "Discovery document {url}\n  FAILED: {e}")?;
            return Ok(2);
        }
    };
    let findings = preflight(&meta, &needs(args));
    let (text, code) = report(args, url.as_str(), &meta, &findings);
    write!(out, "{text}")?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> PreflightArgs {
        let mut argv = vec!["kubectl-tpp", "preflight", "https://as", "--ca", "ca.pem"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Preflight(p) => p,
            _ => unreachable!(),
        }
    }

    fn sandbox() -> ProviderMetadata {
        discovery::parse(include_bytes!(
            "../../operator/tests/data/sandbox-discovery.json"
        ))
        .unwrap()
    }

    #[test]
    fn the_seed_discovery_document_passes_for_every_registration_mode() {
        for mode in ["Static", "Dynamic", "HubOnboarding", "SignedRequest"] {
            let a = args(&["--registration", mode]);
            let f = preflight(&sandbox(), &needs(&a));
            let (text, code) = report(
                &a,
                "https://as/.well-known/openid-configuration",
                &sandbox(),
                &f,
            );
            assert_eq!(code, 0, "{mode}: {text}");
            assert!(text.contains("PASS: 0 error(s)"), "{text}");
        }
    }

    #[test]
    fn an_error_finding_fails_with_exit_code_one_and_is_named() {
        let mut meta = sandbox();
        meta.pushed_authorization_request_endpoint = None;
        meta.mtls_endpoint_aliases
            .remove("pushed_authorization_request_endpoint");
        let a = args(&[]);
        let f = preflight(&meta, &needs(&a));
        let (text, code) = report(&a, "u", &meta, &f);
        assert_eq!(code, 1, "{text}");
        assert!(
            text.contains("ERROR") && text.contains("pushed_authorization_request_endpoint"),
            "{text}"
        );
        // The same document passes without the FAPI 2.0 profile.
        let a = args(&["--profile", "None"]);
        assert_eq!(report(&a, "u", &meta, &preflight(&meta, &needs(&a))).1, 0);
    }
}
