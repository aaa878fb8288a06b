//! docs/operations.md's Verbs section lists every annotation verb the operator acts on
//! (`tpp_operator::crd::annotations`) and points to the `kubectl tpp` plugin.

use tpp_operator::crd::annotations;

fn verbs_section() -> String {
    let doc = include_str!("../../docs/operations.md");
    let start = doc
        .find("## Verbs")
        .unwrap_or_else(|| panic!("docs/operations.md has no Verbs section"));
    let rest = &doc[start + 2..];
    let end = rest.find("\n## ").map_or(rest.len(), |i| i + 2);
    doc[start..start + end].to_owned()
}

#[test]
fn the_verbs_section_lists_every_annotation_the_operator_acts_on() {
    let section = verbs_section();
    let every = [
        annotations::RENEW_TOKENS,
        annotations::ROTATE_KEYS,
        annotations::RENEW_CERTIFICATE,
        annotations::APPROVED_KIDS,
        annotations::REFRESH_DISCOVERY,
        annotations::RETRY_REGISTRATION,
    ];
    let missing: Vec<&str> = every.into_iter().filter(|a| !section.contains(a)).collect();
    assert!(missing.is_empty(), "not in the Verbs section: {missing:?}");
}

#[test]
fn the_verbs_section_points_to_the_kubectl_plugin() {
    let section = verbs_section();
    assert!(
        section.contains("kubectl tpp") && section.contains("kubectl-tpp/"),
        "the Verbs section does not mention `kubectl tpp` (kubectl-tpp/)"
    );
}
