//! The fly target: deploy/fly.toml validated, then `flyctl deploy --image`, whose `release_command`
//! migrates before any machine changes and whose strategy keeps the old machines until the new ones
//! pass their checks. flyctl has reported success with machines left on the old version, so VERIFY
//! reads every machine; a failure from there on deploys the previous image again.

use anyhow::{Context as _, Result, bail};
use camino::Utf8PathBuf;
use serde_json::Value;

use super::image::Image;
use super::platform::{Cli, Platform};
use crate::project;

/// Fly's placeholder in the committed fly.toml, to be replaced with the app's name.
const PLACEHOLDER: &str = "CHANGE-ME";
/// The one-off machine that runs `release_command` is not one of the app's.
const RELEASE_COMMAND_GROUP: &str = "fly_app_release_command";

#[derive(Debug)]
pub(crate) struct Fly {
    config: Utf8PathBuf,
    flyctl: Option<Cli>,
    app: String,
    /// The image every machine ran before this deploy: what an undo deploys again.
    previous: Option<String>,
}

impl Fly {
    pub(crate) fn new() -> Self {
        Self { config: project::root().join("deploy/fly.toml"), flyctl: None, app: String::new(), previous: None }
    }

    fn flyctl(&self) -> Result<&Cli> {
        self.flyctl.as_ref().context("PREFLIGHT did not run")
    }

    fn deploy(&self, image: &str) -> Result<()> {
        self.flyctl()?.run(&["deploy", "--config", self.config.as_str(), "--image", image])
    }

    /// The app's machines (not the release command's), as `flyctl machines list --json` describes them.
    fn machines(&self) -> Result<Vec<Value>> {
        let list = self.flyctl()?.json(&["machines", "list", "--app", &self.app, "--json"], true)?;
        Ok(list
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|machine| machine["config"]["metadata"]["fly_process_group"] != RELEASE_COMMAND_GROUP)
            .filter(|machine| !matches!(machine["state"].as_str(), Some("destroyed" | "destroying")))
            .cloned()
            .collect())
    }

    /// Every machine runs `image`, and every started one passes its checks.
    fn verify(&self, image: &Image) -> Result<()> {
        let machines = self.machines()?;
        if machines.is_empty() {
            bail!("the app {} has no machine", self.app);
        }
        let stale: Vec<String> = machines
            .iter()
            .filter(|machine| !runs(machine, image))
            .map(|machine| format!("{} runs {}", machine["id"], machine["config"]["image"]))
            .collect();
        if !stale.is_empty() {
            bail!("{} of {} machines do not run {image}: {}", stale.len(), machines.len(), stale.join(", "));
        }
        let failing: Vec<String> = machines
            .iter()
            .filter(|machine| machine["state"] == "started")
            .flat_map(|machine| {
                let checks = machine["checks"].as_array().cloned().unwrap_or_default();
                checks
                    .into_iter()
                    .filter(|check| check["status"] != "passing")
                    .map(move |check| format!("{} check {} is {}", machine["id"], check["name"], check["status"]))
            })
            .collect();
        if !failing.is_empty() {
            bail!("machines fail their checks: {}", failing.join(", "));
        }
        if !machines.iter().any(|machine| machine["state"] == "started") {
            bail!("no machine of {} is started", self.app);
        }
        Ok(())
    }
}

/// True when the machine runs `image`: by its configured reference, or by the digest Fly resolved.
fn runs(machine: &Value, image: &Image) -> bool {
    let configured = machine["config"]["image"].as_str().unwrap_or_default();
    image.is(configured) || image.digest().is_some_and(|digest| machine["image_ref"]["digest"] == digest)
}

impl Platform for Fly {
    const NAME: &'static str = "fly";

    fn preflight(&mut self, _image: &Image) -> Result<()> {
        let flyctl = Cli::find("flyctl", "install it (https://fly.io/docs/flyctl/install/) and set FLY_API_TOKEN")?;
        let text = std::fs::read_to_string(&self.config).with_context(|| format!("reading {}", self.config))?;
        let config: toml::Table =
            toml::from_str(&text).with_context(|| format!("{} is not valid TOML", self.config))?;
        let problems = validate(&config);
        if !problems.is_empty() {
            bail!("{} is not fit to deploy:\n  - {}", self.config, problems.join("\n  - "));
        }
        self.app = config["app"].as_str().unwrap_or_default().to_owned();
        crate::secrets::fly()?;
        self.flyctl = Some(flyctl);
        Ok(())
    }

    fn serving(&mut self) -> Result<Option<String>> {
        let mut images: Vec<String> = self
            .machines()?
            .iter()
            .filter_map(|machine| machine["config"]["image"].as_str().map(str::to_owned))
            .collect();
        images.sort();
        images.dedup();
        match images.as_slice() {
            [] => Ok(None),
            [image] => {
                self.previous = Some(image.clone());
                Ok(self.previous.clone())
            }
            _ => bail!(
                "the machines of {} run different images ({}): no single release to go back to if this deploy fails; \
                 bring them to one first (`flyctl deploy --image <the one that should serve>`)",
                self.app,
                images.join(", ")
            ),
        }
    }

    fn skipped(&self, state: &str) -> Option<&'static str> {
        match state {
            "MIGRATE" => Some("fly.toml's release_command runs it within flyctl deploy, before any machine changes"),
            "HEALTHY" => Some("flyctl deploy waits for the new machines' checks"),
            "SWITCH" => Some("Fly's proxy moves traffic as flyctl deploy replaces the machines"),
            "DRAIN" => Some("Fly stops the old machines: kill_signal, then kill_timeout"),
            _ => None,
        }
    }

    fn run(&mut self, state: &'static str, image: &Image) -> Result<()> {
        match state {
            "CANDIDATE" => self.deploy(&image.to_string()),
            "VERIFY" => self.verify(image),
            _ => bail!("the fly target has no work for {state}"),
        }
    }

    fn undo(&mut self, failed_in: &str) -> Result<()> {
        let previous = self.previous.clone().context("no machine ran before this deploy")?;
        let previous_image = Image::parse(&previous)?;
        // A deploy that flyctl itself failed may have changed nothing (a failed release_command stops it
        // before any machine); deploying the previous image again would rerun its release_command for nothing.
        if failed_in == "CANDIDATE" && self.verify(&previous_image).is_ok() {
            println!("deploy: every machine still runs {previous}: nothing to undo");
            return Ok(());
        }
        self.deploy(&previous)?;
        self.verify(&previous_image)
    }
}

/// What deploy/fly.toml must hold before flyctl is called; every problem, not just the first.
fn validate(config: &toml::Table) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, value) in config {
        placeholders(value, key, &mut problems);
    }
    if config.get("app").and_then(toml::Value::as_str).is_none_or(str::is_empty) {
        problems.push("no `app`: set the Fly app's name".to_owned());
    }
    let deploy = &config.get("deploy");
    let setting = |key: &str| deploy.and_then(|deploy| deploy.get(key)).and_then(toml::Value::as_str);
    if setting("release_command").is_none_or(str::is_empty) {
        problems.push("no [deploy] release_command: the release's migrations would never run".to_owned());
    }
    match setting("strategy") {
        Some("bluegreen" | "rolling" | "canary") => {}
        Some(other) => problems.push(format!("[deploy] strategy = {other:?} replaces every machine at once")),
        None => problems.push("no [deploy] strategy: set \"bluegreen\" (new machines pass checks first)".to_owned()),
    }
    let checks = config.get("http_service").and_then(|service| service.get("checks")).and_then(toml::Value::as_array);
    if checks.is_none_or(Vec::is_empty) {
        problems.push("no [[http_service.checks]]: nothing would hold back machines that do not answer".to_owned());
    }
    problems
}

/// Every string still holding the placeholder, by its key path.
fn placeholders(value: &toml::Value, path: &str, problems: &mut Vec<String>) {
    match value {
        toml::Value::String(text) if text.contains(PLACEHOLDER) => {
            problems.push(format!("`{path}` = {text:?}: replace {PLACEHOLDER} with the Fly app's name"));
        }
        toml::Value::Table(table) => {
            for (key, child) in table {
                placeholders(child, &format!("{path}.{key}"), problems);
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|item| placeholders(item, path, problems)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> String {
        std::fs::read_to_string(project::root().join("deploy/fly.toml")).expect("read")
    }

    fn problems(text: &str) -> Vec<String> {
        validate(&toml::from_str(text).expect("TOML"))
    }

    #[test]
    fn the_committed_config_only_lacks_the_app_name() {
        let found = problems(&committed());
        assert!(!found.is_empty() && found.iter().all(|problem| problem.contains("replace CHANGE-ME")), "{found:?}");
        assert!(found.iter().any(|problem| problem.starts_with("`app` = ")), "{found:?}");
        assert_eq!(problems(&committed().replace(PLACEHOLDER, "acme")), Vec::<String>::new());
    }

    #[test]
    fn a_config_that_would_deploy_unsafely_is_refused() {
        let config = committed()
            .replace(PLACEHOLDER, "acme")
            .replace("release_command = \"migrate\"", "")
            .replace("strategy = \"bluegreen\"", "strategy = \"immediate\"")
            .replace("[[http_service.checks]]", "[http_service.not_checks]");
        let problems = problems(&config).join("\n");
        for expected in ["no [deploy] release_command", "\"immediate\" replaces every machine", "no [[http_service"] {
            assert!(problems.contains(expected), "{expected:?} missing from:\n{problems}");
        }
    }

    #[test]
    fn a_machine_runs_the_release_by_reference_or_by_resolved_digest() {
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let pinned = Image::release(&format!("ghcr.io/acme/app@{digest}")).expect("valid");
        let machine = |image: &str, resolved: &str| serde_json::json!({"config": {"image": image}, "image_ref": {"digest": resolved}});
        assert!(runs(&machine(&format!("ghcr.io/acme/app@{digest}"), ""), &pinned));
        assert!(runs(&machine("registry.fly.io/acme:deployment-1", digest), &pinned));
        assert!(!runs(&machine("ghcr.io/acme/app:v1", "sha256:other"), &pinned));
    }
}
