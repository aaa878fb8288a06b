//! `kubectl tpp status`: one TppClient as text. The next token refresh is the operator's own
//! refresh point (`tpp_operator::rotation::refresh_at` under the client's policy and jitter
//! seed), not a guess. Pure: the object, the credentials summary and `now` in, text out.

use std::fmt::Write as _;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use tpp_operator::crd::{
    AuthorizationServerSpec, AuthorizationServerStatus, TppClient, condition::types,
};
use tpp_operator::reconcile::policy;
use tpp_operator::rotation::{TokenRecord, refresh_at};

use crate::approve;
use crate::credentials::CredentialsSummary;
use crate::time::{relative, rfc3339, with_relative};

/// Condition types in the order they are shown (any others after them).
const ORDER: [&str; 7] = [
    types::READY,
    "Reconciling",
    "Stalled",
    types::REGISTERED,
    types::SIGNING_KEY_READY,
    types::TRANSPORT_CERTIFICATE_READY,
    types::TOKENS_READY,
];

/// Left-aligned columns, two spaces apart.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = indent.to_owned();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The TppClient's AuthorizationServer or ClusterAuthorizationServer, as `status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerView {
    /// The object does not exist.
    Missing,
    /// The object's issuer and Ready condition.
    Found {
        /// `spec.issuer`.
        issuer: String,
        /// Its `Ready` condition, if any.
        ready: Option<Condition>,
    },
}

impl ServerView {
    /// From the server's spec and status.
    pub fn found(
        spec: &AuthorizationServerSpec,
        status: Option<&AuthorizationServerStatus>,
    ) -> Self {
        ServerView::Found {
            issuer: spec.issuer.clone(),
            ready: status
                .and_then(|s| tpp_operator::crd::condition::find(&s.conditions, types::READY))
                .cloned(),
        }
    }
}

/// The summary of `client` at `now`, with at most `history` history entries. `server` is its
/// authorization server when it could be read.
pub fn render(
    client: &TppClient,
    credentials: Option<&CredentialsSummary>,
    server: Option<&ServerView>,
    now: Timestamp,
    history: usize,
) -> String {
    let mut out = String::new();
    let spec = &client.spec;
    let status = client.status.clone().unwrap_or_default();
    let ns = client.namespace().unwrap_or_default();
    let name = client.name_any();
    let _ = writeln!(
        out,
        "TppClient {ns}/{name}: {:?} registration, {}, {:?}/{}",
        spec.registration.mode,
        policy::auth_method_name(spec.authentication.method),
        spec.authorization_server_ref.kind,
        spec.authorization_server_ref.name
    );
    let generation = client.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation;
    let ready = tpp_operator::crd::condition::find(&status.conditions, types::READY);
    let _ = writeln!(
        out,
        "  Ready:        {}",
        match ready {
            Some(c) => format!(
                "{} ({}) since {}: {}",
                c.status,
                c.reason,
                relative(c.last_transition_time.0, now),
                c.message
            ),
            None => "no status yet: the operator has not reconciled this client".into(),
        }
    );
    match server {
        Some(ServerView::Missing) => {
            let _ = writeln!(
                out,
                "  Server:       {:?} {} not found",
                spec.authorization_server_ref.kind, spec.authorization_server_ref.name
            );
        }
        Some(ServerView::Found { ready, .. }) => {
            let _ = writeln!(
                out,
                "  Server:       {}",
                match ready {
                    Some(c) if c.status == "True" => format!("Ready ({})", c.reason),
                    Some(c) => format!("not ready ({}): {}", c.reason, c.message),
                    None => "no status yet".to_owned(),
                }
            );
        }
        None => {}
    }
    if spec.suspend {
        let _ = writeln!(
            out,
            "  Suspended:    yes (spec.suspend): no calls to the authorization server"
        );
    }
    if observed != Some(generation) {
        let _ = writeln!(
            out,
            "  Generation:   {generation}, observed {}: the operator has not caught up yet",
            observed.map_or("none".into(), |o| o.to_string())
        );
    }
    let _ = writeln!(
        out,
        "  Client ID:    {}",
        status
            .client_id
            .as_deref()
            .or(credentials.and_then(|c| c.client_id.as_deref()))
            .unwrap_or("(not registered yet)")
    );
    let server_issuer = match server {
        Some(ServerView::Found { issuer, .. }) => Some(issuer),
        _ => None,
    };
    if let Some(issuer) = credentials
        .and_then(|c| c.issuer.as_ref())
        .or(server_issuer)
    {
        let _ = writeln!(out, "  Issuer:       {issuer}");
    }
    if let Some(te) = credentials.and_then(|c| c.token_endpoint.as_ref()) {
        let _ = writeln!(out, "  Token URL:    {te}");
    }
    if status.consecutive_failures > 0 {
        let _ = writeln!(
            out,
            "  Failures:     {} in a row",
            status.consecutive_failures
        );
    }

    // Conditions.
    let mut conditions = status.conditions.clone();
    conditions.sort_by_key(|c| {
        ORDER
            .iter()
            .position(|t| *t == c.type_)
            .unwrap_or(ORDER.len())
    });
    if !conditions.is_empty() {
        let _ = writeln!(out, "\nConditions:");
        let mut rows = vec![vec![
            "TYPE".into(),
            "STATUS".into(),
            "REASON".into(),
            "SINCE".into(),
            "MESSAGE".into(),
        ]];
        for c in &conditions {
            rows.push(vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                relative(c.last_transition_time.0, now),
                c.message.clone(),
            ]);
        }
        out.push_str(&table(&rows, "  "));
    }

    // Certificate.
    let _ = writeln!(
        out,
        "\nTransport certificate ({:?}):",
        spec.transport_certificate.source
    );
    match &status.certificate {
        Some(cert) => {
            if let Some(s) = &cert.subject {
                let _ = writeln!(out, "  Subject:      {s}");
            }
            if let Some(t) = &cert.not_after {
                let _ = writeln!(out, "  Not after:    {}", with_relative(t.0, now));
            }
            if let Some(t) = &cert.renewal_time {
                let _ = writeln!(out, "  Renewal:      {}", with_relative(t.0, now));
            }
            if let Some(x) = &cert.x5t_s256 {
                let _ = writeln!(out, "  x5t#S256:     {x} (tokens are bound to it)");
            }
        }
        None => {
            let _ = writeln!(out, "  none yet");
        }
    }

    // Keys.
    let _ = writeln!(out, "\nKeys:");
    if status.signing_keys.is_empty() {
        let _ = writeln!(out, "  none yet");
    } else {
        let signing_kid = credentials.and_then(|c| c.signing_kid.as_deref());
        let mut rows = vec![vec![
            "KID".into(),
            "USE".into(),
            "STATE".into(),
            "CREATED".into(),
            "ACTIVE FROM".into(),
            "RETIRES".into(),
        ]];
        for k in &status.signing_keys {
            let t = |v: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
                v.as_ref().map_or("-".into(), |t| rfc3339(t.0))
            };
            let mark = if Some(k.kid.as_str()) == signing_kid {
                " (signs)"
            } else {
                ""
            };
            rows.push(vec![
                k.kid.clone(),
                k.use_.clone(),
                format!("{}{mark}", k.state),
                t(&k.created_at),
                t(&k.activate_at),
                t(&k.retire_at),
            ]);
        }
        out.push_str(&table(&rows, "  "));
        let active = status
            .signing_keys
            .iter()
            .find(|k| k.use_ == "sig" && k.state == "Active");
        match (
            spec.signing_key.rotation.every,
            active.and_then(|k| k.created_at.as_ref()),
        ) {
            (Some(every), Some(created)) => {
                if let Ok(at) = created.0.checked_add(every.signed()) {
                    let _ = writeln!(out, "  Next rotation: {}", with_relative(at, now));
                }
            }
            (None, _) => {
                let _ = writeln!(
                    out,
                    "  Next rotation: none scheduled (signingKey.rotation.every is unset)"
                );
            }
            _ => {}
        }
    }
    let pending = approve::pending(client, None);
    let gated = policy::publication(client) == tpp_operator::rotation::Publication::ApprovalGate;
    if gated || !pending.is_empty() {
        let _ = writeln!(
            out,
            "  Pending approval: {}",
            if pending.is_empty() {
                "none".to_owned()
            } else {
                format!(
                    "{} (upload to the AS, then `kubectl tpp approve {name}`)",
                    pending
                        .iter()
                        .map(|p| p.kid.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }

    // Tokens.
    let secret_name = credentials.map_or_else(
        || tpp_operator::store::layout::credentials_name(&name),
        |c| c.name.clone(),
    );
    let _ = writeln!(out, "\nTokens (Secret {secret_name}):");
    if spec.tokens.is_empty() {
        let _ = writeln!(out, "  none configured");
    } else {
        let uid = client.uid().unwrap_or_default();
        let rotation = policy::rotation_policy(client, &uid);
        let seed = policy::jitter_seed(&uid);
        let mut rows = vec![vec![
            "NAME".into(),
            "SCOPE".into(),
            "ISSUED".into(),
            "EXPIRES".into(),
            "NEXT REFRESH".into(),
        ]];
        for t in &spec.tokens {
            let held = credentials.and_then(|c| c.tokens.get(&t.name));
            let (issued, expires) = (
                held.and_then(|h| h.issued_at),
                held.and_then(|h| h.expires_at),
            );
            let next = match (
                issued,
                expires,
                rotation.tokens.iter().find(|p| p.name == t.name),
            ) {
                _ if spec.suspend => "suspended".to_owned(),
                (Some(i), Some(e), Some(p)) => {
                    let record = TokenRecord {
                        name: t.name.clone(),
                        issued_at: i,
                        expires_at: e,
                        cert_x5t_s256: String::new(),
                    };
                    let at = refresh_at(p, &record, seed);
                    if at <= now {
                        "due now".to_owned()
                    } else {
                        with_relative(at, now)
                    }
                }
                _ => "-".to_owned(),
            };
            rows.push(vec![
                t.name.clone(),
                held.and_then(|h| h.scope.clone())
                    .unwrap_or_else(|| t.scope.clone()),
                issued.map_or("-".into(), |i| with_relative(i, now)),
                expires.map_or("not issued yet".into(), |e| with_relative(e, now)),
                next,
            ]);
        }
        out.push_str(&table(&rows, "  "));
    }

    // History.
    if history > 0 && !status.history.is_empty() {
        let _ = writeln!(out, "\nHistory (newest first):");
        let rows: Vec<Vec<String>> = status
            .history
            .iter()
            .take(history)
            .map(|h| vec![rfc3339(h.time.0), h.reason.clone(), h.message.clone()])
            .collect();
        out.push_str(&table(&rows, "  "));
    }
    out
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
