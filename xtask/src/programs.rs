//! Where a system program is found: on `PATH`, then where distributions install it outside a normal
//! user's `PATH` (`/usr/sbin` holds nginx and sshd on Debian), PostgreSQL's versioned directories and
//! Homebrew's. The xtask and its tests include this one file, so both find the same program.

use std::path::{Path, PathBuf};

/// Searched after `PATH`, in this order.
const USUAL_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/opt/homebrew/sbin",
    "/opt/homebrew/bin",
];

/// The program's path: `PATH` first, then the usual places, then PostgreSQL's directories.
pub(crate) fn find(name: &str) -> Option<PathBuf> {
    which::which(name).ok().or_else(|| {
        USUAL_DIRS
            .iter()
            .map(PathBuf::from)
            .chain(postgres_dirs())
            .map(|dir| dir.join(name))
            .find(|path| is_executable(path))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// PostgreSQL's `bin` directories on Debian, RHEL and Homebrew, the newest version first.
pub(crate) fn postgres_dirs() -> Vec<PathBuf> {
    let mut dirs = versioned("/usr/lib/postgresql", "");
    dirs.extend(versioned("/usr", "pgsql-"));
    dirs.extend(versioned("/opt/homebrew/opt", "postgresql"));
    dirs.extend(versioned("/usr/local/opt", "postgresql"));
    dirs
}

/// `<parent>/<prefix><version>/bin` for every version found, the highest first.
fn versioned(parent: &str, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name.strip_prefix(prefix)?.trim_start_matches('@');
            let major = version.split('.').next().and_then(|major| major.parse().ok()).unwrap_or(0);
            Some((major, Path::new(parent).join(&name).join("bin")))
        })
        .collect();
    found.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    found.into_iter().map(|(_, dir)| dir).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_tried_newest_first() {
        let root = std::env::temp_dir().join(format!("xtask-versions-{}", std::process::id()));
        for version in ["9.6", "15", "16"] {
            std::fs::create_dir_all(root.join(version).join("bin")).expect("scratch dir");
        }
        let found = versioned(root.to_str().expect("utf-8"), "");
        let _ = std::fs::remove_dir_all(&root);
        let names: Vec<_> = found.iter().filter_map(|dir| dir.parent()?.file_name()?.to_str()).collect();
        assert_eq!(names, ["16", "15", "9.6"]);
    }

    #[test]
    fn a_program_outside_path_is_found_in_the_usual_places() {
        // `sh` is on every Unix; the usual places are searched only after PATH.
        assert!(find("sh").is_some());
        assert!(find("no-such-program-xtask").is_none());
    }
}
