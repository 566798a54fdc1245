//! `cargo xtask deploy`: ships the service from main. No deploy target is configured yet.

use anyhow::{Result, bail};

pub(crate) fn run() -> Result<()> {
    bail!(
        "no deploy target is configured: nothing was deployed. \
         Deploy targets (host, kubernetes, fly) are not implemented yet; see README.md"
    )
}
