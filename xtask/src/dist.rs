//! `target/dist`: what the `build` step leaves for CI to upload and the deploy job to ship — the release
//! service, this xtask (so deploying compiles nothing), and a `SHA256SUMS` the deploy job checks.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::{checksum, project};

pub(crate) fn dir() -> Utf8PathBuf {
    project::target_dir().join("dist")
}

/// Copies `app` and the running xtask into a fresh `target/dist` with their checksums; returns the directory.
pub(crate) fn write(app: &Utf8Path) -> Result<Utf8PathBuf> {
    let dir = dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {dir}"))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    let xtask = std::env::current_exe().context("finding the xtask binary")?;
    let xtask = Utf8PathBuf::from_path_buf(xtask).map_err(|path| anyhow::anyhow!("not UTF-8: {}", path.display()))?;
    let mut sums = String::new();
    for (name, from) in [("app", app), ("xtask", xtask.as_path())] {
        let to = dir.join(name);
        std::fs::copy(from, &to).with_context(|| format!("copying {from} to {to}"))?;
        // The format `sha256sum --check` reads: digest, two spaces, the file name.
        sums.push_str(&format!("{}  {name}\n", checksum::sha256(&to)?));
    }
    std::fs::write(dir.join("SHA256SUMS"), sums).with_context(|| format!("writing {dir}/SHA256SUMS"))?;
    Ok(dir)
}
