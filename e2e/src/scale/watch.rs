//! Watches the benchmark namespace's Secrets and TppClients from outside the operator and keeps
//! what the metrics need: which clients are Ready, every object change (a new resourceVersion),
//! each credentials Secret's current `<token>.expires_at`, and, for every token replacement, how
//! late it came past the old token's latest refresh point (`expiresAt - lifetime/3`) or whether it
//! came before its earliest one (`expiresAt - lifetime/3 - lifetime/10`: a premature re-mint).
//! Kubernetes I/O (two watches); the bookkeeping ([`State`]) is pure.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    api::DynamicObject,
    core::{ApiResource, GroupVersionKind},
    runtime::watcher,
};

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One object change seen by the watch.
#[derive(Clone, Debug)]
pub struct Change {
    /// When it was seen (Unix seconds).
    pub at: f64,
    /// `credentials`, `keys`, `registration`, `secret` (other) or `tppclient`.
    pub kind: &'static str,
}

/// One token replacement in a credentials Secret.
#[derive(Clone, Debug)]
pub struct Replacement {
    /// When the new token was seen (Unix seconds).
    pub at: f64,
    /// Seconds past the old token's latest refresh point (0 when on time).
    pub late_s: f64,
    /// Seen before the old token's earliest refresh point.
    pub premature: bool,
}

/// What the watches have seen.
#[derive(Debug, Default)]
pub struct State {
    token: String,
    resource_versions: HashMap<(&'static str, String), String>,
    expires_at: HashMap<String, f64>,
    /// Ready TppClients.
    pub ready: HashSet<String>,
    /// When each TppClient was first seen Ready (Unix seconds).
    pub first_ready: HashMap<String, f64>,
    /// Every change, in order.
    pub changes: Vec<Change>,
    /// Every token replacement, in order.
    pub replacements: Vec<Replacement>,
}

fn secret_kind(name: &str) -> &'static str {
    ["credentials", "keys", "registration"]
        .into_iter()
        .find(|k| name.ends_with(&format!("-{k}")))
        .unwrap_or("secret")
}

impl State {
    /// Tracks token `token` (its `<token>.expires_at` key).
    pub fn new(token: &str) -> Self {
        Self {
            token: token.to_owned(),
            ..Default::default()
        }
    }

    fn changed(&mut self, kind: &'static str, name: &str, rv: Option<String>, at: f64) -> bool {
        let rv = rv.unwrap_or_default();
        let previous = self
            .resource_versions
            .insert((kind, name.to_owned()), rv.clone());
        let changed = previous.as_deref() != Some(rv.as_str());
        if changed {
            self.changes.push(Change { at, kind });
        }
        changed
    }

    /// A Secret version seen at `at`.
    pub fn secret(&mut self, s: &Secret, at: f64) {
        let name = s.name_any();
        let kind = secret_kind(&name);
        if !self.changed(kind, &name, s.resource_version(), at) || kind != "credentials" {
            return;
        }
        let key = format!("{}.expires_at", self.token);
        let Some(expires) = s.data.as_ref().and_then(|d| d.get(&key)).and_then(|b| {
            std::str::from_utf8(&b.0)
                .ok()?
                .parse::<jiff::Timestamp>()
                .ok()
        }) else {
            return;
        };
        let expires = expires.as_millisecond() as f64 / 1000.0;
        if let Some(old) = self.expires_at.insert(name, expires)
            && (old - expires).abs() > 1e-3
        {
            // The sandbox issues `expires_in` = its configured lifetime; the issue time is
            // `expires - lifetime`, and the refresh window is [exp - L/3 - L/10, exp - L/3].
            let lifetime = (expires - at).max(1.0);
            let latest = old - lifetime / 3.0;
            let earliest = latest - lifetime / 10.0;
            self.replacements.push(Replacement {
                at,
                late_s: (at - latest).max(0.0),
                premature: at < earliest - 1.0,
            });
        }
    }

    /// A TppClient version seen at `at`.
    pub fn client(&mut self, o: &DynamicObject, at: f64) {
        let name = o.name_any();
        self.changed("tppclient", &name, o.resource_version(), at);
        let ready = o.data["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready {
            self.first_ready.entry(name.clone()).or_insert(at);
            self.ready.insert(name);
        } else {
            self.ready.remove(&name);
        }
    }

    /// Seconds after `t0` at which the `q`-quantile (0..=1) of `n` clients was first Ready
    /// (nearest rank); `None` when fewer had become Ready.
    pub fn ready_after(&self, n: usize, q: f64, t0: f64) -> Option<f64> {
        let mut times: Vec<f64> = self.first_ready.values().copied().collect();
        times.sort_by(f64::total_cmp);
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n.max(1));
        times.get(rank - 1).map(|t| t - t0)
    }

    /// Credentials Secrets whose token has expired at `now`.
    pub fn expired(&self, now: f64) -> usize {
        self.expires_at.values().filter(|e| **e <= now).count()
    }

    /// Changes of `kind` seen in `[from, to)`.
    pub fn changes_between(&self, kind: &str, from: f64, to: f64) -> usize {
        self.changes
            .iter()
            .filter(|c| c.kind == kind && c.at >= from && c.at < to)
            .count()
    }

    /// Token replacements seen in `[from, to)`.
    pub fn replacements_between(&self, from: f64, to: f64) -> Vec<Replacement> {
        self.replacements
            .iter()
            .filter(|r| r.at >= from && r.at < to)
            .cloned()
            .collect()
    }
}

/// The running watches and their shared [`State`].
pub struct Tracker {
    /// What has been seen.
    pub state: Arc<Mutex<State>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Tracker {
    /// Starts watching Secrets and TppClients in `namespace`, tracking token `token`.
    pub fn start(client: Client, namespace: &str, token: &str) -> Self {
        let state = Arc::new(Mutex::new(State::new(token)));
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tpp.dev", "v1alpha1", "TppClient"));
        let clients: Api<DynamicObject> = Api::namespaced_with(client, namespace, &ar);
        let s = state.clone();
        let t1 = tokio::spawn(async move {
            let mut stream = watcher(secrets, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event
                    && let Ok(mut st) = s.lock()
                {
                    st.secret(&o, now_unix());
                }
            }
        });
        let s = state.clone();
        let t2 = tokio::spawn(async move {
            let mut stream = watcher(clients, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event
                    && let Ok(mut st) = s.lock()
                {
                    st.client(&o, now_unix());
                }
            }
        });
        Self {
            state,
            tasks: vec![t1, t2],
        }
    }

    /// Runs `f` on the state.
    pub fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn credentials(rv: &str, expires: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("c1-credentials".into());
        s.metadata.resource_version = Some(rv.into());
        s.data = Some(BTreeMap::from([(
            "accounts.expires_at".into(),
            ByteString(expires.as_bytes().to_vec()),
        )]));
        s
    }

    #[test]
    fn a_token_replaced_after_its_latest_refresh_point_counts_as_late() {
        let mut st = State::new("accounts");
        // 30 s tokens: the first expires at 1030, so its latest refresh point is 1020.
        st.secret(&credentials("1", "1970-01-01T00:17:10Z"), 1000.0);
        st.secret(&credentials("2", "1970-01-01T00:17:32Z"), 1022.0);
        let r = st.replacements_between(0.0, 2000.0);
        assert_eq!(r.len(), 1);
        assert!((r[0].late_s - 2.0).abs() < 1e-6 && !r[0].premature);
        assert_eq!(st.changes_between("credentials", 0.0, 2000.0), 2);
        assert_eq!(st.expired(1030.0), 0);
        assert_eq!(st.expired(1052.0), 1);
    }

    #[test]
    fn ready_quantiles_count_first_transitions_only() {
        let mut st = State::new("accounts");
        let mut o = DynamicObject::new(
            "a",
            &ApiResource::from_gvk(&GroupVersionKind::gvk("tpp.dev", "v1alpha1", "TppClient")),
        );
        o.metadata.resource_version = Some("1".into());
        o.data =
            serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        st.client(&o, 10.0);
        o.metadata.resource_version = Some("2".into());
        st.client(&o, 30.0);
        assert_eq!(st.ready_after(2, 0.5, 0.0), Some(10.0));
        assert_eq!(st.ready_after(2, 1.0, 0.0), None);
        assert_eq!(st.changes_between("tppclient", 0.0, 100.0), 2);
    }

    #[test]
    fn a_token_replaced_long_before_its_refresh_window_is_premature_and_repeats_are_not_changes() {
        let mut st = State::new("accounts");
        st.secret(&credentials("1", "1970-01-01T00:17:10Z"), 1000.0);
        st.secret(&credentials("1", "1970-01-01T00:17:10Z"), 1001.0);
        st.secret(&credentials("2", "1970-01-01T00:17:15Z"), 1005.0);
        let r = st.replacements_between(0.0, 2000.0);
        assert!(r.len() == 1 && r[0].premature && r[0].late_s == 0.0);
        assert_eq!(st.changes_between("credentials", 0.0, 2000.0), 2);
    }
}
