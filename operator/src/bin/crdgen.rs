//! Prints the CRDs as YAML, or writes them to a folder (`crdgen <dir>`, used by `make crds`).

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1);
    for (file, crd) in tpp_operator::crd::all() {
        let yaml = tpp_operator::crd::to_yaml(&crd);
        match &dir {
            Some(dir) => {
                let path = std::path::Path::new(dir).join(file);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            None => print!("---\n{yaml}"),
        }
    }
    Ok(())
}
