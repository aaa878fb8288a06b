//! Every value a tenant writes into a spec is bounded by the schema (issue 13, item 1): every
//! string has a `maxLength` (or an `enum`), every integer a `maximum` (the API server does not
//! enforce an integer `format`: a `uint32` field took 2^32 and the object no longer decoded),
//! every list a `maxItems`, every map a `maxProperties`, so that the API server refuses an oversized object at apply time instead of
//! the operator registering 1,000 redirect URIs at the AS.

use serde_json::Value;

/// Subtrees whose bounds are not ours to set: `allowedNamespaces` is the upstream
/// `LabelSelector` of a cluster-scoped object only the platform team writes; `extra` is free
/// JSON (preserve-unknown-fields) bounded by the object size and checked by the operator.
const UNBOUNDED_BY_DESIGN: &[&str] = &[
    ".spec.allowedNamespaces",
    ".spec.registration.metadata.extra",
];

fn unbounded(path: &str, schema: &Value, out: &mut Vec<String>) {
    if UNBOUNDED_BY_DESIGN.contains(&path) {
        return;
    }
    let has = |k: &str| schema.get(k).is_some();
    match schema.get("type").and_then(Value::as_str) {
        Some("string") if !has("enum") && !has("maxLength") => {
            out.push(format!("{path}: string without maxLength"))
        }
        Some("integer") if !has("maximum") => out.push(format!("{path}: integer without maximum")),
        Some("array") if !has("maxItems") => out.push(format!("{path}: list without maxItems")),
        Some("object") if has("additionalProperties") && !has("maxProperties") => {
            out.push(format!("{path}: map without maxProperties"))
        }
        _ => {}
    }
    if let Some(items) = schema.get("items") {
        unbounded(&format!("{path}[]"), items, out);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        unbounded(&format!("{path}.*"), values, out);
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            unbounded(&format!("{path}.{name}"), sub, out);
        }
    }
}

#[test]
fn every_spec_string_integer_list_and_map_is_bounded_by_the_schema() {
    let mut out = Vec::new();
    for (file, crd) in super::all() {
        let crd = serde_json::to_value(&crd).unwrap();
        for version in crd["spec"]["versions"].as_array().unwrap() {
            let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
            assert!(spec.is_object(), "{file}: no spec schema");
            let mut found = Vec::new();
            unbounded(".spec", spec, &mut found);
            out.extend(found.into_iter().map(|f| format!("{file} {f}")));
        }
    }
    assert!(out.is_empty(), "unbounded fields:\n{}", out.join("\n"));
}
