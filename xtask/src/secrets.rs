//! `cargo xtask secrets check --target host|kubernetes|fly`: every variable a deployed service requires
//! (`app/src/contract.rs`, compiled here as well, so the list exists once) is in the target's store —
//! secrets in its secret store, settings with its configuration. Only names are read out and printed,
//! never a value. Every deploy's PREFLIGHT runs the same check.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::deploy::{RootArg, Target};
use crate::project;

#[allow(dead_code, unreachable_pub)]
#[path = "../../app/src/contract.rs"]
mod contract;

use contract::{REQUIRED_WHEN_DEPLOYED, Required};

/// The Secret deploy/k8s/deployment.yaml mounts the secrets from, one key per secret.
const KUBERNETES_SECRET: &str = "app-secrets";

#[derive(Args, Debug)]
pub(crate) struct SecretsArgs {
    #[command(subcommand)]
    action: SecretsAction,
}

#[derive(Subcommand, Debug)]
enum SecretsAction {
    /// Exit non-zero naming every required variable the target's store lacks; values are never shown.
    Check {
        #[arg(long, value_enum)]
        target: Target,
        /// For the host target: the deploy root holding deploy.env (and --ssh for a remote host).
        #[command(flatten)]
        root: RootArg,
    },
}

pub(crate) fn run(args: &SecretsArgs) -> Result<()> {
    let SecretsAction::Check { target, root } = &args.action;
    match target {
        Target::Host => match root.remote()? {
            Some(remote) => remote.xtask(&root.get(), &["secrets", "check", "--target", "host"]),
            None => host(&crate::deploy::host_service_env(&root.get())?),
        },
        Target::Kubernetes => kubernetes(),
        Target::Fly => fly(),
    }
}

/// The host target: `deploy.env` sets each variable, a secret directly or through `NAME_FILE` naming a
/// non-empty file that not every user can read.
pub(crate) fn host(env: &[(String, String)]) -> Result<()> {
    let get = |name: &str| env.iter().find(|(key, value)| key == name && !value.is_empty()).map(|(_, v)| v.as_str());
    let mut problems = Vec::new();
    for required in REQUIRED_WHEN_DEPLOYED {
        let file_var = format!("{}_FILE", required.name);
        match (get(required.name), required.secret.then(|| get(&file_var)).flatten()) {
            (None, None) => problems.push(format!(
                "{} is not in deploy.env: add {}",
                required.name,
                if required.secret {
                    format!("{file_var}=/etc/shipshape/credentials/…")
                } else {
                    required.how.to_owned()
                }
            )),
            (Some(_), Some(_)) => problems.push(format!("both {} and {file_var} are set: keep one", required.name)),
            (Some(_), None) => {}
            (None, Some(path)) => match std::fs::metadata(path) {
                Err(error) => problems.push(format!("{file_var}={path}: {error}: put {} there", required.how)),
                Ok(meta) if !meta.is_file() || meta.len() == 0 => {
                    problems.push(format!("{file_var}={path} is empty or not a file: put {} there", required.how));
                }
                Ok(meta) if meta.permissions().mode() & 0o004 != 0 => {
                    problems.push(format!("{file_var}={path} is readable by every user: chmod o-rwx {path}"));
                }
                Ok(_) => {}
            },
        }
    }
    verdict("host (deploy.env)", &problems)
}

/// The kubernetes target: secrets are keys of the `app-secrets` Secret (`kubectl get secret`, keys only),
/// settings lines of deploy/k8s/app-config.env, the ConfigMap every pod reads.
pub(crate) fn kubernetes() -> Result<()> {
    let dir = project::root().join("deploy/k8s");
    let kustomization =
        std::fs::read_to_string(dir.join("kustomization.yaml")).context("reading kustomization.yaml")?;
    let kustomization: serde_yaml_ng::Value = serde_yaml_ng::from_str(&kustomization)?;
    let namespace = kustomization["namespace"].as_str().context("deploy/k8s/kustomization.yaml sets no namespace")?;
    let args = ["--namespace", namespace, "get", "secret", KUBERNETES_SECRET, "--ignore-not-found", "--output=json"];
    let keys = match names_from("kubectl", &args)? {
        Value::Null => BTreeSet::new(),
        secret => secret["data"].as_object().into_iter().flatten().map(|(key, _)| key.clone()).collect(),
    };
    let config_file = dir.join("app-config.env");
    let config = std::fs::read_to_string(&config_file).with_context(|| format!("reading {config_file}"))?;
    let settings = env_names(&config);
    let problems: Vec<String> = REQUIRED_WHEN_DEPLOYED
        .iter()
        .filter_map(|required| {
            let key = secret_key(required);
            match (required.secret, keys.contains(&key), settings.contains(required.name)) {
                (true, _, true) => Some(format!(
                    "{} is in deploy/k8s/app-config.env, in the repository: move it to the Secret {KUBERNETES_SECRET}",
                    required.name
                )),
                (true, false, _) => Some(format!(
                    "{} is not in the Secret {namespace}/{KUBERNETES_SECRET} (key {key}): add it, \
                     e.g. `kubectl --namespace {namespace} create secret generic {KUBERNETES_SECRET} --from-file={key}=… \
                     --dry-run=client --output=yaml | kubectl apply --filename -` with every key ({})",
                    required.name,
                    required.how
                )),
                (false, _, false) => {
                    Some(format!("{} is not in deploy/k8s/app-config.env: add it ({})", required.name, required.how))
                }
                _ => None,
            }
        })
        .collect();
    verdict(&format!("kubernetes (Secret {namespace}/{KUBERNETES_SECRET}, app-config.env)"), &problems)
}

/// The fly target: secrets are the app's Fly secrets (`flyctl secrets list`, names only), settings the
/// `[env]` of deploy/fly.toml.
pub(crate) fn fly() -> Result<()> {
    let file = project::root().join("deploy/fly.toml");
    let config: toml::Table =
        toml::from_str(&std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?)
            .with_context(|| format!("{file} is not valid TOML"))?;
    let app = config.get("app").and_then(toml::Value::as_str).with_context(|| format!("{file} names no app"))?;
    let listed = names_from("flyctl", &["secrets", "list", "--app", app, "--json"])?;
    let secrets: BTreeSet<String> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|secret| secret.get("Name").or_else(|| secret.get("name")).and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    let env = config.get("env").and_then(toml::Value::as_table);
    let problems: Vec<String> = REQUIRED_WHEN_DEPLOYED
        .iter()
        .filter_map(|required| {
            let in_env = env.is_some_and(|env| env.contains_key(required.name));
            match (required.secret, secrets.contains(required.name), in_env) {
                (true, _, true) => Some(format!(
                    "{} is in deploy/fly.toml [env], in the repository: move it to the app's secrets",
                    required.name
                )),
                (true, false, _) => Some(format!(
                    "{} is not a secret of the Fly app {app}: `flyctl secrets import --app {app} --stage` \
                     with the line {}=… on its standard input ({})",
                    required.name, required.name, required.how
                )),
                (false, _, false) => {
                    Some(format!("{} is not in deploy/fly.toml [env]: add it ({})", required.name, required.how))
                }
                _ => None,
            }
        })
        .collect();
    verdict(&format!("fly (secrets of {app}, fly.toml [env])"), &problems)
}

/// The Secret's key a secret is stored under: its name in lower case, as deployment.yaml mounts it.
fn secret_key(required: &Required) -> String {
    required.name.to_ascii_lowercase()
}

/// The `KEY=VALUE` names of an env file.
fn env_names(text: &str) -> BTreeSet<&str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('=').filter(|(_, value)| !value.trim().is_empty()))
        .map(|(key, _)| key.trim())
        .collect()
}

/// Runs a platform CLI that prints JSON. Its output holds values (a Secret's data), so it is parsed
/// here and never echoed; its errors go to the terminal as they come.
fn names_from(program: &str, args: &[&str]) -> Result<Value> {
    let line = format!("{program} {}", args.join(" "));
    println!("secrets: $ {line}");
    let output = Command::new(program)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {program}: is it installed and on PATH?"))?;
    if !output.status.success() {
        bail!("`{line}` failed ({})", output.status);
    }
    if output.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&output.stdout).with_context(|| format!("`{line}` printed something other than JSON"))
}

fn verdict(store: &str, problems: &[String]) -> Result<()> {
    if problems.is_empty() {
        println!("secrets: {store}: all {} required variables are there", REQUIRED_WHEN_DEPLOYED.len());
        return Ok(());
    }
    bail!("secrets: {store} lacks {} of the required variables:\n  - {}", problems.len(), problems.join("\n  - "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_yaml_mounts_each_secret_from_its_key() {
        let deployment = std::fs::read_to_string(project::root().join("deploy/k8s/deployment.yaml")).expect("read");
        assert!(deployment.contains(&format!("secretName: {KUBERNETES_SECRET}")));
        for required in REQUIRED_WHEN_DEPLOYED.iter().filter(|required| required.secret) {
            let key = secret_key(required);
            assert!(deployment.contains(&format!("- key: {key}\n                path: {key}")), "{key}");
            assert!(
                deployment
                    .contains(&format!("- name: {}_FILE\n              value: /run/secrets/app/{key}", required.name)),
                "{}",
                required.name
            );
        }
    }

    #[test]
    fn env_names_skip_comments_and_blank_values() {
        let names = env_names("# APP_ENV=production\nALLOWED_HOSTS=a.example\nCORS_ALLOWED_ORIGINS=\n");
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["ALLOWED_HOSTS"]);
    }
}
