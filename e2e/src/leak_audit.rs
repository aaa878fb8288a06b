//! The leak audit every e2e test passes through when it succeeds (docs/security.md § Leak
//! audit): the secret values the operator holds for the test's clients — access tokens,
//! registration access tokens, initial access tokens, private keys (PEM and JWK) — must not
//! appear, raw or base64-encoded, in the operator's log (at debug level), in the namespace's
//! events, in the statuses of our objects, or in the operator's metrics. A hit names the Secret
//! key and the place, never the value. Every value counts, not only the last: [`SeenValues`],
//! fed by a watch of the test namespace's Secrets for the whole test ([`watch_secrets`]),
//! remembers each distinct value any version of a Secret held (a token refreshed ten times is
//! ten values), and the audit searches all of them in one pass over each place (Aho-Corasick).
//! Does Kubernetes I/O (reads only).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use aho_corasick::AhoCorasick;
use anyhow::{Result, bail};
use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::{
    Api, ResourceExt,
    api::{DynamicObject, ListParams},
    core::{ApiResource, GroupVersionKind},
    runtime::{WatchStreamExt, watcher},
};

use crate::TestContext;

/// Shorter values are not searched (too likely to occur by chance).
const MIN_LEN: usize = 16;

/// Secret keys whose values are secret (a suffix match on the key).
const SECRET_KEYS: [&str; 7] = [
    ".access_token",
    "registration_access_token",
    "initial_access_token",
    "token",
    "signing.key",
    "tls.key",
    ".key",
];

/// JWK members that are private.
const PRIVATE_JWK_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

/// One secret value to look for, with where it came from.
#[derive(Debug)]
pub struct Needle {
    /// `<Secret>/<key>` (no value).
    pub origin: String,
    /// What is searched.
    pub forms: Vec<String>,
}

/// The needles of one secret value: raw, and base64 (standard and URL-safe); a PEM is searched
/// by the first line of its base64 body.
fn needle(origin: String, value: &str) -> Option<Needle> {
    let value = value.trim();
    let raw = if value.starts_with("-----BEGIN") {
        // A middle line of the body: the first one is mostly the ASN.1 header and public
        // parameters, common to many keys.
        let body: Vec<&str> = value
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= MIN_LEN)
            .collect();
        (*body.get(body.len() / 2)?).to_owned()
    } else {
        value.to_owned()
    };
    if raw.len() < MIN_LEN {
        return None;
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_bytes());
    Some(Needle {
        origin,
        forms: vec![raw, b64, b64url],
    })
}

fn private_jwk_members(v: &serde_json::Value, origin: &str, out: &mut Vec<Needle>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if let (true, Some(s)) = (PRIVATE_JWK_MEMBERS.contains(&k.as_str()), v.as_str()) {
                    out.extend(needle(format!("{origin} (JWK member {k})"), s));
                } else {
                    private_jwk_members(v, origin, out);
                }
            }
        }
        serde_json::Value::Array(a) => {
            for v in a {
                private_jwk_members(v, origin, out);
            }
        }
        // `state.json` holds each private JWK as a JSON string (`StoredKey::private_jwk`).
        serde_json::Value::String(text) if text.trim_start().starts_with('{') => {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
                private_jwk_members(&v, origin, out);
            }
        }
        _ => {}
    }
}

/// The secret values held in `secrets`.
pub fn needles(secrets: &[Secret]) -> Vec<Needle> {
    let mut out = vec![];
    for s in secrets {
        for (key, value) in s.data.iter().flatten() {
            let origin = format!("Secret {}/{key}", s.name_any());
            let text = String::from_utf8_lossy(&value.0);
            if SECRET_KEYS.iter().any(|k| key.ends_with(k)) {
                out.extend(needle(origin.clone(), &text));
            }
            if key.ends_with(".json")
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            {
                private_jwk_members(&v, &origin, &mut out);
                if let Some(rat) = v["registration_access_token"].as_str() {
                    out.extend(needle(format!("{origin} (registration_access_token)"), rat));
                }
            }
        }
    }
    out
}

/// Most distinct values [`SeenValues`] keeps (a bound on the audit's memory: a few MB of
/// tokens); values beyond it are counted, not searched, and the audit's line says how many.
pub const MAX_SEEN: usize = 20_000;

/// Every distinct secret value seen in any version of the test namespace's Secrets, keyed by
/// its raw form (the first [`Needle::forms`]), at most [`MAX_SEEN`]. Pure.
#[derive(Debug, Default)]
pub struct SeenValues {
    by_raw: BTreeMap<String, Needle>,
    over_cap: usize,
}

impl SeenValues {
    /// Remember the secret values of one version of a Secret.
    pub fn observe(&mut self, secret: &Secret) {
        self.add(needles(std::slice::from_ref(secret)));
    }

    fn add(&mut self, found: Vec<Needle>) {
        for n in found {
            let Some(raw) = n.forms.first().cloned() else {
                continue;
            };
            if self.by_raw.contains_key(&raw) {
                continue;
            }
            if self.by_raw.len() >= MAX_SEEN {
                self.over_cap += 1;
                continue;
            }
            self.by_raw.insert(raw, n);
        }
    }

    /// Take in what another watch saw (another namespace of the same test): each value once,
    /// the cap counted over both.
    pub fn merge(&mut self, other: SeenValues) {
        self.over_cap += other.over_cap;
        self.add(other.by_raw.into_values().collect());
    }

    /// Distinct values that did not fit under [`MAX_SEEN`] (not searched).
    pub fn over_cap(&self) -> usize {
        self.over_cap
    }

    /// The values seen, plus those of `current` (the Secrets as they are at the audit: a write
    /// the watch has not delivered yet still counts), each value once.
    pub fn with(mut self, current: &[Secret]) -> Vec<Needle> {
        self.add(needles(current));
        self.by_raw.into_values().collect()
    }
}

/// A watch of `namespace`'s Secrets feeding a [`SeenValues`]; stopped (aborted) when dropped.
pub struct SecretWatch {
    seen: Arc<Mutex<SeenValues>>,
    task: tokio::task::JoinHandle<()>,
}

impl SecretWatch {
    /// Stop watching and take what was seen.
    pub fn finish(self) -> SeenValues {
        self.task.abort();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *seen)
    }
}

impl Drop for SecretWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start watching `namespace`'s Secrets; returns once the initial list is in (so that nothing
/// the test writes afterwards is missed), or after 10 s (the audit's final list still covers
/// the last values then).
pub async fn watch_secrets(client: kube::Client, namespace: &str) -> SecretWatch {
    let seen = Arc::new(Mutex::new(SeenValues::default()));
    let (listed_tx, listed_rx) = tokio::sync::oneshot::channel::<()>();
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let sink = seen.clone();
    let task = tokio::spawn(async move {
        let mut listed = Some(listed_tx);
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        while let Some(event) = events.next().await {
            match event {
                Ok(
                    watcher::Event::Apply(s)
                    | watcher::Event::InitApply(s)
                    | watcher::Event::Delete(s),
                ) => {
                    sink.lock().unwrap_or_else(|p| p.into_inner()).observe(&s);
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = listed.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(watcher::Event::Init) | Err(_) => {}
            }
        }
    });
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), listed_rx).await;
    SecretWatch { seen, task }
}

/// Where a needle was found: `(origin, place)`. One pass over each place for all needles.
pub fn hits<'a>(needles: &'a [Needle], places: &[(String, String)]) -> Vec<(&'a str, String)> {
    let mut owner = vec![];
    let mut patterns = vec![];
    for (i, n) in needles.iter().enumerate() {
        for f in &n.forms {
            owner.push(i);
            patterns.push(f.as_str());
        }
    }
    let Ok(ac) = AhoCorasick::new(&patterns) else {
        // Only a pattern set too large for memory fails to build: search one by one.
        return needles
            .iter()
            .flat_map(|n| {
                places
                    .iter()
                    .filter(|(_, text)| n.forms.iter().any(|f| text.contains(f.as_str())))
                    .map(|(place, _)| (n.origin.as_str(), place.clone()))
            })
            .collect();
    };
    let mut found = std::collections::BTreeSet::new();
    for (p, (_, text)) in places.iter().enumerate() {
        for m in ac.find_overlapping_iter(text.as_str()) {
            found.insert((owner[m.pattern().as_usize()], p));
        }
    }
    found
        .into_iter()
        .map(|(n, p)| (needles[n].origin.as_str(), places[p].0.clone()))
        .collect()
}

/// Audit the test's namespaces (its own and every one it registered,
/// [`TestContext::create_namespace`]) against `logs` (operator log files) and `metrics` texts,
/// for every value in `seen` and in the namespaces' Secrets now. Every value is searched in
/// every place of every namespace: a value of one namespace in another's events is a leak too.
/// Returns the number of distinct values checked.
pub async fn audit(
    ctx: &TestContext,
    namespaces: &[String],
    seen: SeenValues,
    logs: &[std::path::PathBuf],
    metrics: &[String],
) -> Result<usize> {
    let mut secrets = vec![];
    for ns in namespaces {
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
        secrets.extend(api.list(&ListParams::default()).await?.items);
    }
    let needles = seen.with(&secrets);
    let mut places: Vec<(String, String)> = vec![];
    for log in logs {
        places.push((
            format!("operator log {}", log.display()),
            std::fs::read_to_string(log).unwrap_or_default(),
        ));
    }
    for (i, m) in metrics.iter().enumerate() {
        places.push((format!("metrics #{i}"), m.clone()));
    }
    for ns in namespaces {
        let events: Api<Event> = Api::namespaced(ctx.client.clone(), ns);
        let events = events.list(&ListParams::default()).await?;
        let text: Vec<String> = events
            .items
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e.message.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default()
                )
            })
            .collect();
        places.push((format!("events of {ns}"), text.join("\n")));
        for kind in ["TppClient", "AuthorizationServer"] {
            let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tpp.dev", "v1alpha1", kind));
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
            if let Ok(list) = api.list(&ListParams::default()).await {
                for o in list {
                    places.push((
                        format!("{kind} {ns}/{} status", o.name_any()),
                        o.data["status"].to_string(),
                    ));
                }
            }
        }
    }
    let found = hits(&needles, &places);
    if !found.is_empty() {
        let lines: Vec<String> = found
            .iter()
            .map(|(origin, place)| format!("{origin} appears in {place}"))
            .collect();
        bail!("leak audit: {}", lines.join("; "));
    }
    Ok(needles.len())
}

/// Append one passed audit (namespaces, distinct values checked) to the file named by
/// `TPP_LEAK_AUDIT_LOG`, if set: `make test-e2e` sums it into one line for the whole run
/// (docs/security.md, "Leak audit"). A failed audit fails its test and is not recorded.
pub fn record_total(namespaces: &str, values: usize) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("TPP_LEAK_AUDIT_LOG") else {
        return;
    };
    let line = format!("{namespaces}\t{values}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("leak audit: could not record the total in {path:?}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;

    fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        s
    }

    #[test]
    fn a_token_in_a_log_raw_or_base64_is_a_hit_named_without_its_value() {
        let token = "eyJhbGciOiJQUzI1NiJ9.secret-token-body";
        let n = needles(&[secret(
            "c-credentials",
            &[
                ("accounts.access_token", token),
                ("client_id", "public-client-id-1234"),
            ],
        )]);
        assert_eq!(n.len(), 1, "only the token is a secret: {n:?}");
        let b64 = base64::engine::general_purpose::STANDARD.encode(token);
        let places = vec![
            (
                "log".to_owned(),
                format!("sent Authorization: DPoP {token}"),
            ),
            ("events".to_owned(), format!("value {b64}")),
            ("status".to_owned(), "public-client-id-1234".to_owned()),
        ];
        let h = hits(&n, &places);
        assert_eq!(h.len(), 2);
        assert!(h.iter().all(|(origin, _)| !origin.contains(token)));
    }

    #[test]
    fn private_jwk_members_and_pem_bodies_are_searched() {
        let state = r#"{"keys":[{"jwk":{"kty":"RSA","n":"public-modulus-abcdefgh","d":"private-exponent-abcdefgh"}}]}"#;
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nPRIVATEPARTPRIVATEPARTPRIVATE00\nAB==\n-----END PRIVATE KEY-----\n";
        let n = needles(&[
            secret("c-keys", &[("state.json", state)]),
            secret("c-credentials", &[("tls.key", pem)]),
        ]);
        let origins: Vec<&str> = n.iter().map(|n| n.origin.as_str()).collect();
        assert_eq!(origins.len(), 2, "{origins:?}");
        let places = vec![(
            "log".to_owned(),
            "... PRIVATEPARTPRIVATEPARTPRIVATE00 ...".to_owned(),
        )];
        assert_eq!(hits(&n, &places).len(), 1);
        let places = vec![("log".to_owned(), "n=public-modulus-abcdefgh".to_owned())];
        assert!(
            hits(&n, &places).is_empty(),
            "public members are not secrets"
        );
    }

    #[test]
    fn a_value_held_only_by_an_earlier_version_of_a_secret_is_still_searched() {
        let first = "eyJhbGciOiJQUzI1NiJ9.first-token-long-gone";
        let second = "eyJhbGciOiJQUzI1NiJ9.second-token-now-held";
        let rat_v1 = "registration-access-token-version-1";
        let v1 = secret(
            "c-credentials",
            &[
                ("accounts.access_token", first),
                ("client_id", "public-client-id-1234"),
            ],
        );
        let v2 = secret("c-credentials", &[("accounts.access_token", second)]);
        let reg = secret("c-registration", &[("registration_access_token", rat_v1)]);
        let mut seen = SeenValues::default();
        for s in [&v1, &reg, &v2, &v1] {
            seen.observe(s);
        }
        // At the audit only the last version is left, and the registration Secret is gone.
        let n = seen.with(std::slice::from_ref(&v2));
        assert_eq!(n.len(), 3, "each distinct value once: {n:?}");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rat_v1);
        let places = vec![
            (
                "operator log".to_owned(),
                format!("refreshing; old token {first}"),
            ),
            ("events".to_owned(), format!("note {b64}")),
        ];
        let mut h = hits(&n, &places);
        h.sort();
        assert_eq!(
            h,
            vec![
                (
                    "Secret c-credentials/accounts.access_token",
                    "operator log".to_owned()
                ),
                (
                    "Secret c-registration/registration_access_token",
                    "events".to_owned()
                ),
            ]
        );
        // The final values alone miss both.
        assert!(hits(&needles(std::slice::from_ref(&v2)), &places).is_empty());
    }

    #[test]
    fn values_beyond_the_cap_are_counted_not_kept() {
        let mut seen = SeenValues::default();
        for i in 0..MAX_SEEN + 5 {
            seen.observe(&secret(
                "c-credentials",
                &[("a.access_token", &format!("token-value-number-{i:08}"))],
            ));
        }
        assert_eq!(seen.over_cap(), 5);
        assert_eq!(seen.with(&[]).len(), MAX_SEEN);
    }

    #[test]
    fn values_seen_in_a_second_namespace_are_searched_with_the_first_each_once() {
        let mut victim = SeenValues::default();
        victim.observe(&secret(
            "payments-credentials",
            &[("a.access_token", "victim-token-value-0001")],
        ));
        let mut hostile = SeenValues::default();
        hostile.observe(&secret(
            "own-client-registration",
            &[("registration_access_token", "hostile-rat-value-0001")],
        ));
        hostile.observe(&secret(
            "copy",
            &[("a.access_token", "victim-token-value-0001")],
        ));
        victim.merge(hostile);
        let all = victim.with(&[]);
        assert_eq!(all.len(), 2, "each distinct value once");
        let places = vec![(
            "events of victim".to_owned(),
            "the AS said hostile-rat-value-0001".to_owned(),
        )];
        assert_eq!(
            hits(&all, &places),
            vec![(
                "Secret own-client-registration/registration_access_token",
                "events of victim".to_owned()
            )],
            "a value of the second namespace is found in the first's events"
        );
    }

    #[test]
    fn needles_that_overlap_in_one_place_are_all_found() {
        let a = "overlapping-secret-AAAA-value";
        let b = "AAAA-value-and-another-secret";
        let n = needles(&[secret(
            "c-credentials",
            &[("a.access_token", a), ("b.access_token", b)],
        )]);
        let places = vec![(
            "log".to_owned(),
            "x overlapping-secret-AAAA-value-and-another-secret y".to_owned(),
        )];
        assert_eq!(hits(&n, &places).len(), 2);
    }

    #[test]
    fn a_private_jwk_stored_as_a_json_string_in_the_key_state_is_searched() {
        // The layout of `<name>-keys` (`operator/src/store/state.rs`, `StoredKey::private_jwk`).
        let state = serde_json::json!({"keys": [{
            "kid": "k1",
            "private_jwk": r#"{"kty":"RSA","n":"public-modulus-abcdefgh","d":"private-exponent-abcdefgh"}"#,
        }]})
        .to_string();
        let n = needles(&[secret("c-keys", &[("state.json", &state)])]);
        let places = vec![("log".to_owned(), "d=private-exponent-abcdefgh".to_owned())];
        assert_eq!(hits(&n, &places).len(), 1, "{n:?}");
    }
}
