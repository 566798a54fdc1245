//! `cargo xtask openapi [--check]`: `app/openapi.json`, the committed copy of the OpenAPI document
//! the service generates from its code (`app openapi`).

use anyhow::{Context, Result, bail};

use crate::{generated, project};

pub(crate) fn run(check: bool) -> Result<()> {
    let output = duct::cmd(project::cargo(), ["run", "--quiet", "--locked", "--package", "app", "--", "openapi"])
        .dir(project::root())
        .stdout_capture()
        .unchecked()
        .run()
        .context("running `app openapi`")?;
    if !output.status.success() {
        bail!("`app openapi` failed with {}", output.status);
    }
    let document = String::from_utf8(output.stdout).context("the document is UTF-8")?;
    generated::write_or_check(&project::root().join("app/openapi.json"), &document, check, "cargo xtask openapi")
}
