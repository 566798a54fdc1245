//! `cargo xtask fuzz [--seconds N] [TARGET]…`: the cargo-fuzz targets of `fuzz/` (the parsers of
//! untrusted input), each for a bounded time, on the nightly toolchain libFuzzer needs. A crash fails
//! the run and leaves its input under `fuzz/artifacts/TARGET/`.

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::preflight::{self, InstallArgs};
use crate::{project, tools};

#[derive(Args, Debug)]
pub(crate) struct FuzzArgs {
    /// How long each target runs.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    seconds: u32,
    /// Only these targets (default: every one in fuzz/fuzz_targets).
    targets: Vec<String>,
    #[command(flatten)]
    install: InstallArgs,
}

pub(crate) fn run(args: &FuzzArgs) -> Result<()> {
    preflight::run(&[&tools::C_TOOLCHAIN, &tools::CARGO_FUZZ], args.install)?;
    let dir = project::root().join("fuzz");
    let all = targets(&dir)?;
    if let Some(unknown) = args.targets.iter().find(|target| !all.contains(target)) {
        bail!("there is no fuzz target {unknown}; the targets are {}", all.join(", "));
    }
    let chosen = if args.targets.is_empty() { &all } else { &args.targets };
    for target in chosen {
        println!("fuzz: {target} for {} s", args.seconds);
        let max_time = format!("-max_total_time={}", args.seconds);
        duct::cmd(
            "rustup",
            ["run", "nightly", "cargo", "fuzz", "run", "--fuzz-dir", dir.as_str(), target, "--", &max_time],
        )
        .dir(project::root())
        .run()
        .with_context(|| format!("fuzz target {target} failed: its input is under fuzz/artifacts/{target}/"))?;
    }
    Ok(())
}

/// The file stems of `fuzz/fuzz_targets/*.rs`, sorted.
fn targets(dir: &camino::Utf8Path) -> Result<Vec<String>> {
    let sources = dir.join("fuzz_targets");
    let mut names: Vec<String> = sources
        .read_dir_utf8()
        .with_context(|| format!("reading {sources}"))?
        .flatten()
        .filter(|entry| entry.path().extension() == Some("rs"))
        .filter_map(|entry| entry.path().file_stem().map(str::to_owned))
        .collect();
    names.sort_unstable();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_is_declared_in_the_fuzz_manifest() {
        let dir = project::root().join("fuzz");
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("fuzz/Cargo.toml");
        let names = targets(&dir).expect("targets");
        assert!(names.len() >= 5, "{names:?}");
        for name in names {
            assert!(manifest.contains(&format!("path = \"fuzz_targets/{name}.rs\"")), "{name} is not a [[bin]]");
        }
    }
}
