//! Generated files and their `--check` twins: write the file, or fail naming the first difference
//! and the command that regenerates it.

use anyhow::{Context, Result, bail};
use camino::Utf8Path;

/// Writes `expected` to `path`, or with `check` fails unless the file already holds exactly that.
pub(crate) fn write_or_check(path: &Utf8Path, expected: &str, check: bool, regenerate: &str) -> Result<()> {
    if !check {
        std::fs::create_dir_all(path.parent().context("a generated file has a parent directory")?)?;
        std::fs::write(path, expected).with_context(|| format!("writing {path}"))?;
        println!("wrote {path}");
        return Ok(());
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    if actual != expected {
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .map_or_else(|| actual.lines().count().min(expected.lines().count()) + 1, |index| index + 1);
        bail!("{path} is stale or was edited by hand (first difference at line {line}): run `{regenerate}` and commit");
    }
    println!("{path} is up to date");
    Ok(())
}
