//! Where things are: the workspace root, `target/`, and the cargo that runs us.

use camino::{Utf8Path, Utf8PathBuf};

/// The workspace root: the xtask's parent directory, or `XTASK_WORKSPACE` to work on another
/// checkout (the xtask's own tests point it at scratch workspaces).
pub(crate) fn root() -> Utf8PathBuf {
    match std::env::var("XTASK_WORKSPACE") {
        Ok(dir) if !dir.is_empty() => Utf8PathBuf::from(dir),
        _ => Utf8Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits inside the workspace").to_owned(),
    }
}

/// `target/` of the workspace, honouring `CARGO_TARGET_DIR`.
pub(crate) fn target_dir() -> Utf8PathBuf {
    match std::env::var("CARGO_TARGET_DIR") {
        Ok(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// The cargo that started the xtask, so the pinned toolchain runs every step.
pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// True when running inside GitHub Actions.
pub(crate) fn on_github() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|value| value == "true")
}
