//! GitOps checks on our objects, as the tools themselves judge them: the Argo CD health checks
//! and resource actions in `deploy/argocd/` run in a real Lua 5.1 interpreter (Argo CD runs
//! them with gopher-lua, a Lua 5.1), with `obj` converted from JSON the way Argo CD does (JSON
//! `null` is `nil`); and the kstatus rules (sigs.k8s.io/cli-utils `pkg/kstatus`, used by Flux's
//! health checks and `kubectl wait`-like tools) as a small pure function. No I/O besides
//! reading the scripts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaSerdeExt, Value as LuaValue};
use serde_json::Value;

use crate::control_plane::repo_root;

/// Folder of our Argo CD resource customizations, laid out as Argo CD's own
/// `resource_customizations/<group>/<kind>/` (so they can be proposed upstream as they are).
pub fn customizations_dir() -> PathBuf {
    repo_root().join("deploy/argocd/resource_customizations/tpp.dev")
}

/// The kinds with customizations.
pub const KINDS: [&str; 3] = [
    "TppClient",
    "AuthorizationServer",
    "ClusterAuthorizationServer",
];

/// What an Argo CD health script returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing` or `Unknown`.
    pub status: String,
    /// The message shown beside it.
    pub message: String,
}

/// An action as the discovery script lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionInfo {
    /// Greyed out in the UI and refused by the API.
    pub disabled: bool,
    /// The label shown.
    pub display_name: Option<String>,
}

fn script(kind: &str, rel: &str) -> Result<String> {
    let path = customizations_dir().join(kind).join(rel);
    std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
}

/// A fresh interpreter with `obj` set from JSON (nulls become nil, as in Argo CD).
fn interpreter(obj: &Value) -> Result<Lua> {
    let lua = Lua::new();
    let opts = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let value = lua
        .to_value_with(obj, opts)
        .map_err(|e| anyhow::anyhow!("obj to lua: {e}"))?;
    lua.globals()
        .set("obj", value)
        .map_err(|e| anyhow::anyhow!("set obj: {e}"))?;
    Ok(lua)
}

fn run(lua: &Lua, source: &str, name: &str) -> Result<LuaValue> {
    lua.load(source)
        .set_name(name)
        .eval::<LuaValue>()
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

/// Run `<kind>/health.lua` on `obj`.
pub fn argo_health(kind: &str, obj: &Value) -> Result<Health> {
    let lua = interpreter(obj)?;
    let out = run(&lua, &script(kind, "health.lua")?, "health.lua")?;
    let LuaValue::Table(t) = out else {
        bail!("health.lua returned {out:?}, not a table");
    };
    let status: Option<String> = t.get("status").map_err(|e| anyhow::anyhow!("{e}"))?;
    let message: Option<String> = t.get("message").map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Health {
        status: status.context("health.lua returned no status")?,
        message: message.unwrap_or_default(),
    })
}

/// Run `<kind>/actions/discovery.lua` on `obj`.
pub fn argo_actions(kind: &str, obj: &Value) -> Result<BTreeMap<String, ActionInfo>> {
    let lua = interpreter(obj)?;
    let out = run(
        &lua,
        &script(kind, "actions/discovery.lua")?,
        "discovery.lua",
    )?;
    let LuaValue::Table(t) = out else {
        bail!("discovery.lua returned {out:?}, not a table");
    };
    let mut actions = BTreeMap::new();
    for pair in t.pairs::<String, mlua::Table>() {
        let (name, info) = pair.map_err(|e| anyhow::anyhow!("{e}"))?;
        let disabled: Option<bool> = info.get("disabled").map_err(|e| anyhow::anyhow!("{e}"))?;
        let display_name: Option<String> = info
            .get("displayName")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        actions.insert(
            name,
            ActionInfo {
                disabled: disabled.unwrap_or(false),
                display_name,
            },
        );
    }
    Ok(actions)
}

/// Run `<kind>/actions/<action>/action.lua` on `obj`; the modified object.
pub fn argo_action(kind: &str, action: &str, obj: &Value) -> Result<Value> {
    let lua = interpreter(obj)?;
    let out = run(
        &lua,
        &script(kind, &format!("actions/{action}/action.lua"))?,
        "action.lua",
    )?;
    lua.from_value(out)
        .map_err(|e| anyhow::anyhow!("action.lua result to JSON: {e}"))
}

/// The action names of `kind`: the folders under `actions/`.
pub fn action_names(kind: &str) -> Result<Vec<String>> {
    let mut names = vec![];
    for entry in std::fs::read_dir(customizations_dir().join(kind).join("actions"))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The `argocd-cm` data that installs every health check and action (docs/gitops.md), as
/// Argo CD reads it: `resource.customizations.health.<group>_<kind>` holds the script,
/// `resource.customizations.actions.<group>_<kind>` a YAML document with `discovery.lua` and
/// `definitions`.
pub fn argocd_cm_data() -> Result<BTreeMap<String, String>> {
    let mut data = BTreeMap::new();
    for kind in KINDS {
        data.insert(
            format!("resource.customizations.health.tpp.dev_{kind}"),
            script(kind, "health.lua")?,
        );
        let definitions = action_names(kind)?
            .into_iter()
            .map(|name| {
                let lua = script(kind, &format!("actions/{name}/action.lua"))?;
                Ok(serde_json::json!({"name": name, "action.lua": lua}))
            })
            .collect::<Result<Vec<_>>>()?;
        let actions = serde_json::json!({
            "discovery.lua": script(kind, "actions/discovery.lua")?,
            "definitions": definitions,
        });
        data.insert(
            format!("resource.customizations.actions.tpp.dev_{kind}"),
            serde_yaml::to_string(&actions)?,
        );
    }
    Ok(data)
}

/// kstatus's verdict on an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KStatus {
    /// Reconciled: the observed generation is the latest and nothing is in progress or stalled.
    Current,
    /// `Reconciling=True`, or `status.observedGeneration` differs from `metadata.generation`.
    InProgress,
    /// `Stalled=True`: the controller cannot make progress without a change.
    Failed,
    /// `metadata.deletionTimestamp` is set.
    Terminating,
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The kstatus rules for a custom resource (cli-utils `pkg/kstatus/status`: `checkGenericProperties`,
/// then "Resource is current" for kinds it has no specific rules for), in their order:
/// deletion → Terminating; `status.observedGeneration` present and different from
/// `metadata.generation` → InProgress; `Reconciling=True` → InProgress; `Stalled=True` →
/// Failed; otherwise Current. Returns the verdict and kstatus's message.
pub fn kstatus(obj: &Value) -> (KStatus, String) {
    if !obj["metadata"]["deletionTimestamp"].is_null() {
        return (
            KStatus::Terminating,
            "Resource scheduled for deletion".into(),
        );
    }
    let generation = obj["metadata"]["generation"].as_i64();
    if let (Some(g), Some(o)) = (generation, obj["status"]["observedGeneration"].as_i64())
        && g != o
    {
        return (
            KStatus::InProgress,
            format!("generation is {g}, but latest observed generation is {o}"),
        );
    }
    if let Some(c) = condition(obj, "Reconciling").filter(|c| c["status"] == "True") {
        return (
            KStatus::InProgress,
            c["message"].as_str().unwrap_or_default().to_owned(),
        );
    }
    if let Some(c) = condition(obj, "Stalled").filter(|c| c["status"] == "True") {
        return (
            KStatus::Failed,
            c["message"].as_str().unwrap_or_default().to_owned(),
        );
    }
    (KStatus::Current, "Resource is current".into())
}

/// The kstatus conventions an object of ours must keep, as a list of violations (empty when
/// kept): `Reconciling` and `Stalled` are never both True; `Current` only when `Ready=True` (or
/// the client is suspended, a steady state); a `Ready=True` object with the latest generation
/// observed is `Current`; every condition's `observedGeneration`, when set, is at most the
/// object's generation.
pub fn kstatus_violations(obj: &Value) -> Vec<String> {
    let mut out = vec![];
    let is_true = |t: &str| condition(obj, t).is_some_and(|c| c["status"] == "True");
    if is_true("Reconciling") && is_true("Stalled") {
        out.push("Reconciling and Stalled are both True".into());
    }
    let (verdict, message) = kstatus(obj);
    let suspended = obj["spec"]["suspend"] == true;
    let has_status = obj["status"].is_object();
    if has_status && verdict == KStatus::Current && !is_true("Ready") && !suspended {
        out.push(format!(
            "kstatus says Current ({message}) while Ready is not True: {}",
            condition(obj, "Ready")
                .map(Value::to_string)
                .unwrap_or_default()
        ));
    }
    let observed = obj["status"]["observedGeneration"].as_i64();
    let generation = obj["metadata"]["generation"].as_i64();
    if is_true("Ready")
        && observed.is_some()
        && observed == generation
        && verdict != KStatus::Current
        && obj["metadata"]["deletionTimestamp"].is_null()
    {
        out.push(format!(
            "Ready=True yet kstatus says {verdict:?}: {message}"
        ));
    }
    if has_status && observed.is_none() {
        out.push("status without observedGeneration".into());
    }
    for c in obj["status"]["conditions"].as_array().into_iter().flatten() {
        if let (Some(cg), Some(g)) = (c["observedGeneration"].as_i64(), generation)
            && cg > g
        {
            out.push(format!(
                "condition {} observed generation {cg} > {g}",
                c["type"]
            ));
        }
    }
    out
}

#[cfg(test)]
#[path = "gitops_tests.rs"]
mod tests;
