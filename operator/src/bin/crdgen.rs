//! Prints the CRDs as YAML, or writes them to a folder (`crdgen <dir>`), or writes the API
//! reference rendered from them (`crdgen api-reference <file>`). Both used by `make crds`.

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next();
    if dir.as_deref() == Some("api-reference") {
        let path = args
            .next()
            .context("usage: crdgen api-reference <file.md>")?;
        return std::fs::write(&path, tpp_operator::crd::reference::markdown())
            .with_context(|| format!("writing {path}"));
    }
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
