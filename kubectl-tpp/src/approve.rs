//! `kubectl tpp approve`: the operator's approval gate (`Publication::ApprovalGate`: Static and
//! HubOnboarding registration without `jwksUri`, where a human uploads the JWKS at the bank's
//! portal). A new key is published in the `<name>-jwks` ConfigMap and waits until its kid is in
//! the `tpp.dev/approved-kids` annotation. Before approving, the pending kids are shown with the
//! RFC 7638 thumbprint computed from the published JWK, so the human can compare them with what
//! the portal shows. Pure except [`confirm`] (reads the terminal).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::{Result, bail};
use jiff::Timestamp;
use kube::ResourceExt;
use serde_json::{Value, json};
use tpp_operator::crd::{TppClient, annotations};
use tpp_operator::identity::Jwk;
use tpp_operator::reconcile::policy;
use tpp_operator::rotation::Publication;

use crate::time::rfc3339;

/// A key waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingKid {
    /// The key id.
    pub kid: String,
    /// `sig` or `enc`.
    pub use_: String,
    /// `Pending` or `Published`.
    pub state: String,
    /// When the key was generated.
    pub created_at: Option<Timestamp>,
    /// RFC 7638 thumbprint of the published JWK (`None`: not in the published JWKS).
    pub thumbprint: Option<String>,
}

/// Kids already in `tpp.dev/approved-kids`.
pub fn approved(client: &TppClient) -> BTreeSet<String> {
    client
        .annotations()
        .get(annotations::APPROVED_KIDS)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the client's keys wait for a human's approval.
pub fn gated(client: &TppClient) -> bool {
    policy::publication(client) == Publication::ApprovalGate
}

/// Keys of a gated client not active yet and not approved, with their thumbprints from
/// `jwks` (the published JWK set) when given.
pub fn pending(client: &TppClient, jwks: Option<&Value>) -> Vec<PendingKid> {
    if !gated(client) {
        return vec![];
    }
    let approved = approved(client);
    let published: Vec<Jwk> = jwks
        .and_then(|j| serde_json::from_value(j["keys"].clone()).ok())
        .unwrap_or_default();
    client
        .status
        .iter()
        .flat_map(|s| s.signing_keys.iter())
        .filter(|k| matches!(k.state.as_str(), "Pending" | "Published"))
        .filter(|k| !approved.contains(&k.kid))
        .map(|k| PendingKid {
            kid: k.kid.clone(),
            use_: k.use_.clone(),
            state: k.state.clone(),
            created_at: k.created_at.as_ref().map(|t| t.0),
            thumbprint: published
                .iter()
                .find(|j| j.kid.as_deref() == Some(k.kid.as_str()))
                .and_then(|j| j.thumbprint().ok()),
        })
        .collect()
}

/// What `approve` shows before asking.
pub fn render(client: &TppClient, pending: &[PendingKid]) -> String {
    let mut out = String::new();
    let name = client.name_any();
    let ns = client.namespace().unwrap_or_default();
    if !gated(client) {
        let _ = writeln!(
            out,
            "TppClient {ns}/{name} has no approval gate: its keys reach the authorization server through {} and become active on their own.",
            if client.spec.registration.jwks_uri.is_some() {
                "its jwksUri"
            } else {
                "registration"
            }
        );
        return out;
    }
    if pending.is_empty() {
        let _ = writeln!(out, "TppClient {ns}/{name}: no key waits for approval.");
        return out;
    }
    let _ = writeln!(
        out,
        "TppClient {ns}/{name}: {} key(s) wait for approval. Upload the JWKS (`kubectl tpp jwks {name}`) at the authorization server's portal first, and check that the thumbprints match what it shows:",
        pending.len()
    );
    for p in pending {
        let _ = writeln!(
            out,
            "  kid {}  use {}  state {}  created {}",
            p.kid,
            p.use_,
            p.state,
            p.created_at.map_or("-".into(), rfc3339)
        );
        match &p.thumbprint {
            Some(t) if *t == p.kid => {
                let _ = writeln!(
                    out,
                    "      JWK thumbprint (RFC 7638, SHA-256): {t} (equals the kid)"
                );
            }
            Some(t) => {
                let _ = writeln!(
                    out,
                    "      JWK thumbprint (RFC 7638, SHA-256): {t} (DIFFERS from the kid: do not approve)"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "      not in the published JWKS yet: cannot be approved"
                );
            }
        }
    }
    out
}

/// The kids to approve: `requested` (each must be pending, published and thumbprint-consistent)
/// or, when empty, every pending kid that is.
pub fn choose(pending: &[PendingKid], requested: &[String]) -> Result<Vec<String>> {
    let approvable = |p: &PendingKid| p.thumbprint.as_deref() == Some(p.kid.as_str());
    if requested.is_empty() {
        return Ok(pending
            .iter()
            .filter(|p| approvable(p))
            .map(|p| p.kid.clone())
            .collect());
    }
    let mut out = vec![];
    for kid in requested {
        match pending.iter().find(|p| &p.kid == kid) {
            Some(p) if approvable(p) => out.push(kid.clone()),
            Some(_) => bail!("kid {kid} is not in the published JWKS with a matching thumbprint"),
            None => bail!("kid {kid} is not waiting for approval"),
        }
    }
    Ok(out)
}

/// Ask on the terminal; refuses when stdin is not one (use `--yes`).
pub fn confirm(kids: &[String]) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        bail!(
            "stdin is not a terminal: re-run with --yes to approve {}",
            kids.join(", ")
        );
    }
    print!("Approve {}? [y/N] ", kids.join(", "));
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// A JSON merge patch adding `kids` to `tpp.dev/approved-kids` (keeping the kids already
/// there), guarded by the object's resourceVersion so a concurrent change is not overwritten.
pub fn patch(client: &TppClient, kids: &[String]) -> Value {
    let mut all: Vec<String> = client
        .annotations()
        .get(annotations::APPROVED_KIDS)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for k in kids {
        if !all.contains(k) {
            all.push(k.clone());
        }
    }
    json!({"metadata": {
        "resourceVersion": client.resource_version(),
        "annotations": {annotations::APPROVED_KIDS: all.join(",")},
    }})
}

#[cfg(test)]
mod tests {
    use super::*;
    use tpp_operator::crd::KeyStatus;

    const KID: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

    /// RFC 7638 §3.1's example key, whose thumbprint is [`KID`].
    fn jwks() -> Value {
        json!({"keys": [{
            "kty": "RSA",
            "kid": KID,
            "use": "sig",
            "alg": "PS256",
            "e": "AQAB",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        }]})
    }

    fn client(mode: &str, state: &str, approved: Option<&str>) -> TppClient {
        let mut c: TppClient = serde_json::from_value(json!({
            "apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient",
            "metadata": {"name": "manual", "namespace": "bank", "resourceVersion": "42"},
            "spec": {"authorizationServerRef": {"name": "as"}, "registration": {"mode": mode, "clientId": "c1"}},
        }))
        .unwrap();
        if let Some(a) = approved {
            c.metadata.annotations =
                Some([(annotations::APPROVED_KIDS.to_owned(), a.to_owned())].into());
        }
        c.status = Some(tpp_operator::crd::TppClientStatus {
            signing_keys: vec![KeyStatus {
                kid: KID.into(),
                use_: "sig".into(),
                state: state.into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        c
    }

    #[test]
    fn a_published_key_of_a_gated_client_is_pending_with_its_thumbprint() {
        let c = client("Static", "Published", None);
        let p = pending(&c, Some(&jwks()));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].thumbprint.as_deref(), Some(KID));
        let text = render(&c, &p);
        assert!(
            text.contains(KID) && text.contains("equals the kid"),
            "{text}"
        );
        assert_eq!(choose(&p, &[]).unwrap(), [KID]);
    }

    #[test]
    fn approved_active_or_ungated_keys_are_not_pending() {
        assert!(pending(&client("Static", "Published", Some(KID)), Some(&jwks())).is_empty());
        assert!(pending(&client("Static", "Active", None), Some(&jwks())).is_empty());
        let mut dynamic = client("Static", "Published", None);
        dynamic.spec.registration.jwks_uri = Some("https://op/jwks/bank/manual".into());
        assert!(pending(&dynamic, Some(&jwks())).is_empty());
        assert!(render(&dynamic, &[]).contains("no approval gate"));
    }

    #[test]
    fn a_kid_missing_from_the_jwks_or_with_another_thumbprint_is_not_approved() {
        let c = client("Static", "Published", None);
        let p = pending(&c, None);
        assert_eq!(p[0].thumbprint, None);
        assert!(choose(&p, &[]).unwrap().is_empty());
        assert!(choose(&p, &[KID.to_owned()]).is_err());
        let mut wrong = jwks();
        wrong["keys"][0]["e"] = "AQAC".into();
        let p = pending(&c, Some(&wrong));
        assert!(render(&c, &p).contains("DIFFERS"));
        assert!(choose(&p, &[]).unwrap().is_empty());
        assert!(choose(&p, &["other".to_owned()]).is_err());
    }

    #[test]
    fn approval_patch_keeps_earlier_kids_and_guards_the_resource_version() {
        let c = client("Static", "Published", Some("old-kid"));
        let p = patch(&c, &[KID.to_owned()]);
        assert_eq!(
            p["metadata"]["annotations"][annotations::APPROVED_KIDS],
            format!("old-kid,{KID}")
        );
        assert_eq!(p["metadata"]["resourceVersion"], "42");
    }
}
