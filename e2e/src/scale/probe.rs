//! Readings taken from outside the operator: CPU seconds and memory of a process from
//! `/proc/<pid>`, the operator's pid from its admin address, and request counters scraped from a
//! Prometheus text endpoint (kube-apiserver `/metrics`, the operator's admin `/metrics`).
//! Reads `/proc` and does HTTP I/O; parsing is pure.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

/// CPU seconds (user + system) used so far by `pid`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) / ticks as f64)
}

/// CPU seconds the whole machine spent busy (every CPU, everything but idle and iowait), from
/// the first line of `/proc/stat`.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    busy_jiffies(stat.lines().next()?).and_then(|j| {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (ticks > 0).then(|| j / ticks as f64)
    })
}

/// Busy jiffies of a `/proc/stat` `cpu` line: user nice system idle iowait irq softirq steal.
fn busy_jiffies(line: &str) -> Option<f64> {
    let v: Vec<f64> = line
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    (v.len() == 8).then(|| v.iter().sum::<f64>() - v[3] - v[4])
}

/// A `/proc/<pid>/status` memory line in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// The pid of the `tpp-operator` process whose arguments hold `admin_address`.
pub fn operator_pid(admin_address: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_operator = args.first().is_some_and(|a| a.ends_with(b"tpp-operator"));
        (is_operator && args.contains(&admin_address.as_bytes())).then_some(pid)
    })
}

/// The labels of one sample line, e.g. `{verb="PATCH",resource="secrets"}`.
fn labels(text: &str) -> BTreeMap<&str, &str> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        out.insert(key.trim_start_matches([',', ' ']), &after[..end]);
        rest = &after[end + 1..];
    }
    out
}

/// Every sample of counter `name` as (labels, value).
pub fn samples<'a>(text: &'a str, name: &str) -> Vec<(BTreeMap<&'a str, &'a str>, f64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels_text, value) = match rest.strip_prefix('{') {
                Some(r) => r.rsplit_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            Some((labels(labels_text), value.trim().parse().ok()?))
        })
        .collect()
}

/// The sum of counter `name` over all its label sets.
pub fn counter_sum(text: &str, name: &str) -> f64 {
    samples(text, name).iter().map(|(_, v)| v).sum()
}

/// kube-apiserver request counts by (verb, resource, subresource).
#[derive(Clone, Debug, Default)]
pub struct Requests(pub BTreeMap<(String, String, String), f64>);

/// Verbs that write.
pub const WRITE_VERBS: [&str; 5] = ["POST", "PUT", "PATCH", "APPLY", "DELETE"];

impl Requests {
    /// Parses `apiserver_request_total`.
    pub fn parse(text: &str) -> Self {
        let mut out = BTreeMap::new();
        for (l, v) in samples(text, "apiserver_request_total") {
            let key = |k| l.get(k).copied().unwrap_or_default().to_owned();
            *out.entry((key("verb"), key("resource"), key("subresource")))
                .or_insert(0.0) += v;
        }
        Self(out)
    }

    /// `self - earlier`, entry by entry.
    pub fn since(&self, earlier: &Requests) -> Requests {
        Self(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - earlier.0.get(k).copied().unwrap_or(0.0)))
                .collect(),
        )
    }

    /// Write requests matching `resource` (any when `None`) and `subresource`.
    pub fn writes(&self, resource: Option<&str>, subresource: Option<&str>) -> f64 {
        self.0
            .iter()
            .filter(|((verb, res, sub), _)| {
                WRITE_VERBS.contains(&verb.as_str())
                    && resource.is_none_or(|r| r == res)
                    && subresource.is_none_or(|s| s == sub)
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Requests with `verb` on any resource (e.g. `LIST`: one per page).
    pub fn verb(&self, verb: &str) -> f64 {
        self.0
            .iter()
            .filter(|((v, res, _), _)| v == verb && !res.is_empty())
            .map(|(_, v)| v)
            .sum()
    }

    /// Requests to `resource` with any verb.
    pub fn resource(&self, resource: &str) -> f64 {
        self.0
            .iter()
            .filter(|((v, res, _), _)| res == resource && v != "WATCH" && v != "CONNECT")
            .map(|(_, v)| v)
            .sum()
    }

    /// Resource requests other than long-running WATCHes (what a client-side QPS limit counts).
    pub fn resource_requests(&self) -> f64 {
        self.0
            .iter()
            .filter(|((verb, res, _), _)| !res.is_empty() && verb != "WATCH" && verb != "CONNECT")
            .map(|(_, v)| v)
            .sum()
    }

    /// Every non-zero count as `VERB resource[/subresource]`.
    pub fn by_verb_resource(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for ((verb, res, sub), v) in &self.0 {
            if *v > 0.0 {
                let res = if res.is_empty() {
                    "(non-resource)"
                } else {
                    res
                };
                let name = if sub.is_empty() {
                    format!("{verb} {res}")
                } else {
                    format!("{verb} {res}/{sub}")
                };
                *out.entry(name).or_insert(0.0) += v;
            }
        }
        out
    }

    /// Write requests by `resource[/subresource]`.
    pub fn writes_by_resource(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for ((verb, res, sub), v) in &self.0 {
            if WRITE_VERBS.contains(&verb.as_str()) && *v > 0.0 {
                let name = if sub.is_empty() {
                    res.clone()
                } else {
                    format!("{res}/{sub}")
                };
                *out.entry(name).or_insert(0.0) += v;
            }
        }
        out
    }
}

/// Scrapes kube-apiserver `/metrics` with `client`.
pub async fn apiserver_requests(client: &kube::Client) -> Result<Requests> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    Ok(Requests::parse(
        &client.request_text(req).await.context("GET /metrics")?,
    ))
}

/// The operator's admin `/metrics` text.
pub async fn operator_metrics(http: &reqwest::Client, admin_url: &str) -> Result<String> {
    Ok(http
        .get(format!("{admin_url}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_excludes_idle_and_iowait() {
        assert_eq!(busy_jiffies("cpu  10 1 5 100 7 2 3 4 0 0"), Some(25.0));
        assert_eq!(busy_jiffies("cpu0 10 1 5 100 7 2 3 4"), None);
    }

    const APISERVER: &str = r#"# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="APPLY",version="v1"} 7
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="POST",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="tpp.dev",resource="tppclients",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="secrets",scope="namespace",subresource="",verb="WATCH",version="v1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="",scope="",subresource="",verb="GET",version=""} 40
"#;

    #[test]
    fn apiserver_writes_are_counted_by_resource_and_subresource() {
        let r = Requests::parse(APISERVER);
        assert_eq!(r.writes(Some("secrets"), None), 9.0);
        assert_eq!(r.writes(Some("tppclients"), Some("status")), 3.0);
        assert_eq!(r.resource_requests(), 12.0);
        let empty = Requests::default();
        assert_eq!(r.since(&empty).writes(None, None), 12.0);
        assert_eq!(r.writes_by_resource().get("tppclients/status"), Some(&3.0));
    }

    #[test]
    fn unlabelled_and_labelled_counters_are_summed() {
        let text = "tpp_operator_reconciles_total{outcome=\"ok\"} 5\ntpp_operator_reconciles_total{outcome=\"error\"} 2\nother 1\n";
        assert_eq!(counter_sum(text, "tpp_operator_reconciles_total"), 7.0);
        assert_eq!(counter_sum("x_total 3\n", "x_total"), 3.0);
    }

    #[test]
    fn this_process_has_cpu_time_and_resident_memory() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some_and(|s| s >= 0.0));
        assert!(status_kib(me, "VmRSS").is_some_and(|k| k > 0));
        assert_eq!(operator_pid("127.0.0.1:1"), None);
    }
}
