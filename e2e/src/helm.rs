//! Helm for the chart's tests: the binary (`$TPP_HELM`, else built once by
//! `hack/build-helm.sh`) and `helm template` of `charts/tpp-operator` into documents.
//! Process I/O.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::control_plane::repo_root;

/// The helm binary: `$TPP_HELM`, else the last line `hack/build-helm.sh` prints (it builds helm
/// into the cache when missing).
pub fn helm() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("TPP_HELM") {
        return Ok(p.into());
    }
    let out = Command::new(repo_root().join("hack/build-helm.sh"))
        .output()
        .context("run hack/build-helm.sh")?;
    if !out.status.success() {
        bail!(
            "hack/build-helm.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(stdout.lines().last().context("helm path")?.trim().into())
}

/// The chart's folder.
pub fn chart() -> PathBuf {
    repo_root().join("charts/tpp-operator")
}

/// `helm <args>`: (success, stdout, stderr).
pub fn run(args: &[&str]) -> Result<(bool, String, String)> {
    let out = Command::new(helm()?)
        .args(args)
        .output()
        .context("run helm")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `helm template <release> charts/tpp-operator --namespace <namespace> <extra>`, as documents.
pub fn template(release: &str, namespace: &str, extra: &[&str]) -> Result<Vec<serde_yaml::Value>> {
    let chart = chart();
    let mut args = vec![
        "template",
        release,
        chart.to_str().context("chart path")?,
        "--namespace",
        namespace,
    ];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = run(&args)?;
    if !ok {
        bail!("helm template {extra:?} failed: {stderr}");
    }
    serde_yaml::Deserializer::from_str(&stdout)
        .map(|d| serde_yaml::Value::deserialize(d).context("rendered YAML"))
        .filter(|v| !matches!(v, Ok(serde_yaml::Value::Null)))
        .collect()
}
