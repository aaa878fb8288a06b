//! `renew`, `rotate`, `renew-certificate`: set one of the operator's verb annotations to the
//! current instant (nanosecond precision, so two requests never share a value; the operator
//! acts on each new value once, docs/operations.md). Kubernetes I/O.

use std::io::Write;

use anyhow::{Context, Result};
use jiff::Timestamp;
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use tpp_operator::crd::TppClient;

use crate::cli::VerbArgs;

/// The merge patch setting `annotation` to `now`.
pub fn patch(annotation: &str, now: Timestamp) -> Value {
    json!({"metadata": {"annotations": {annotation: now.to_string()}}})
}

/// Annotate the named clients (or every client with `--all`).
pub async fn annotate(
    api: &Api<TppClient>,
    args: &VerbArgs,
    annotation: &str,
    now: Timestamp,
    out: &mut impl Write,
) -> Result<u8> {
    let names = if args.all {
        api.list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|c| c.name_any())
            .collect()
    } else {
        args.names.clone()
    };
    let body = patch(annotation, now);
    for name in names {
        if api.get_opt(&name).await?.is_none() {
            anyhow::bail!("TppClient {name} not found");
        }
        let obj = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .with_context(|| format!("annotate TppClient {name}"))?;
        writeln!(
            out,
            "TppClient {}/{name}: {annotation}={} (the operator acts on it once){}",
            obj.namespace().unwrap_or_default(),
            now,
            if obj.spec.suspend {
                "; the client is suspended: nothing happens until spec.suspend is false"
            } else {
                ""
            }
        )?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verb_patch_sets_only_the_annotation_to_a_fresh_instant() {
        let now: Timestamp = "2026-12-03T10:00:00.123456789Z".parse().unwrap();
        let p = patch("tpp.dev/renew-tokens", now);
        assert_eq!(
            p,
            json!({"metadata": {"annotations": {"tpp.dev/renew-tokens": "2026-12-03T10:00:00.123456789Z"}}})
        );
    }
}
