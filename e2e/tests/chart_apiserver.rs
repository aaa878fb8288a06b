//! The chart's objects are valid for the pinned kube-apiserver: every object `helm template`
//! renders for each configuration of `tests/chart/values/` (watching the test's namespace) is
//! accepted by a server-side dry-run create — schema, defaults and admission, not just YAML.
//! CRDs are left out (already installed, and checked by `api.rs`), and so are kinds whose API
//! the control plane does not serve (the Prometheus Operator's ServiceMonitor).

use anyhow::{Context, bail};
use e2e::{control_plane::repo_root, with_namespace};
use kube::{
    Api,
    api::{DynamicObject, PostParams},
    core::GroupVersionKind,
    discovery::{Discovery, Scope},
};

#[tokio::test]
async fn every_rendered_object_passes_a_server_side_dry_run() {
    with_namespace("chart", |ctx| async move {
        let discovery = Discovery::new(ctx.client.clone()).run().await?;
        // Every configuration of the golden tests; one that watches namespaces watches the
        // test's own (the listed ones do not exist here).
        let watch = format!("watchNamespaces={{{}}}", ctx.namespace);
        let mut configurations = vec![];
        for entry in std::fs::read_dir(repo_root().join("e2e/tests/chart/values"))? {
            let path = entry?.path();
            let values: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path)?)?;
            let name = path
                .file_stem()
                .context("name")?
                .to_string_lossy()
                .into_owned();
            let mut extra = vec!["-f".to_owned(), path.to_string_lossy().into_owned()];
            if !values["watchNamespaces"].is_null() {
                extra.extend(["--set".to_owned(), watch.clone()]);
            }
            configurations.push((name, extra));
        }
        anyhow::ensure!(configurations.len() >= 3, "golden configurations missing");
        let pp = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let mut checked = 0;
        for (name, extra) in configurations {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let docs = e2e::helm::template("tpp-operator", &ctx.namespace, &extra)?;
            for doc in docs {
                let obj: DynamicObject = serde_json::from_value(serde_json::to_value(&doc)?)?;
                let types = obj.types.clone().context("apiVersion and kind")?;
                if types.kind == "CustomResourceDefinition" || types.kind == "ServiceMonitor" {
                    continue;
                }
                let gvk = GroupVersionKind::try_from(&types)?;
                let Some((ar, caps)) = discovery.resolve_gvk(&gvk) else {
                    bail!("{name}: the apiserver serves no {gvk:?}");
                };
                let api: Api<DynamicObject> = match caps.scope {
                    Scope::Cluster => Api::all_with(ctx.client.clone(), &ar),
                    Scope::Namespaced => Api::namespaced_with(
                        ctx.client.clone(),
                        obj.metadata.namespace.as_deref().unwrap_or(&ctx.namespace),
                        &ar,
                    ),
                };
                api.create(&pp, &obj).await.with_context(|| {
                    format!(
                        "{name}: {} {} refused",
                        types.kind,
                        obj.metadata.name.clone().unwrap_or_default()
                    )
                })?;
                checked += 1;
            }
        }
        anyhow::ensure!(checked >= 20, "only {checked} objects checked");
        Ok(())
    })
    .await;
}
