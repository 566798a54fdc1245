//! The kubernetes target: deploy/k8s rendered by `kubectl kustomize`, the release's image set and the
//! result validated, then applied in the order kustomization.yaml documents: the migration Job before
//! any pod of the new release, then the rollout, which `kubectl rollout undo` reverts when it fails.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize as _;
use serde_yaml_ng::Value;

use super::image::Image;
use super::platform::{Cli, Platform};
use crate::project;

const DEPLOYMENT: &str = "app";
const JOB: &str = "app-migrate";
/// The label of what must exist before the migration Job runs (the Job included).
const PRE_DEPLOY: &str = "shipshape.io/pre-deploy";
/// kubectl's own wait; the Deployment's progressDeadlineSeconds usually fails a stuck rollout first.
const ROLLOUT_TIMEOUT: &str = "--timeout=10m";
const JOB_POLL: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub(crate) struct Kubernetes {
    source: Utf8PathBuf,
    /// What was applied: the rendered manifests of the last deploy.
    rendered: Utf8PathBuf,
    kubectl: Option<Cli>,
    namespace: String,
    /// How long the migration Job may run (its activeDeadlineSeconds).
    job_deadline: Duration,
    /// The Deployment's revision before this deploy: what an undo returns to.
    previous_revision: Option<String>,
}

impl Kubernetes {
    pub(crate) fn new(root: &Utf8Path) -> Self {
        Self {
            source: project::root().join("deploy/k8s"),
            rendered: root.join("kubernetes.yaml"),
            kubectl: None,
            namespace: String::new(),
            job_deadline: Duration::ZERO,
            previous_revision: None,
        }
    }

    fn kubectl(&self) -> Result<&Cli> {
        self.kubectl.as_ref().context("PREFLIGHT did not run")
    }

    fn get(&self, kind: &str, name: &str, echo: bool) -> Result<Option<serde_json::Value>> {
        self.kubectl()?.json(&["get", kind, name, "--ignore-not-found", "--output=json"], echo)
    }

    fn migrate(&self) -> Result<()> {
        let kubectl = self.kubectl()?;
        // A Job's pod template is immutable: the previous release's Job goes first.
        kubectl.run(&["delete", "job", JOB, "--ignore-not-found", "--wait"])?;
        kubectl.run(&["apply", "--filename", self.rendered.as_str(), "--selector", &format!("{PRE_DEPLOY}=true")])?;
        let (deadline, job) = (Instant::now() + self.job_deadline + Duration::from_secs(60), format!("job/{JOB}"));
        let logs = format!("`kubectl --namespace {} logs {job}` shows why", self.namespace);
        let mut echo = true;
        loop {
            let status = self.get("job", JOB, echo)?.with_context(|| format!("{job} disappeared while it ran"))?;
            echo = false;
            let conditions = status["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let holds = |kind: &str| conditions.iter().find(|c| c["type"] == kind && c["status"] == "True");
            if holds("Complete").is_some() {
                return Ok(());
            }
            if let Some(failed) = holds("Failed") {
                let why = |key: &str| failed[key].as_str().unwrap_or("?").to_owned();
                bail!("{job} failed ({}: {}); {logs}", why("reason"), why("message"));
            }
            if Instant::now() > deadline {
                bail!("{job} neither completed nor failed within its deadline; {logs}");
            }
            std::thread::sleep(JOB_POLL);
        }
    }

    fn verify(&self, image: &Image) -> Result<()> {
        let deployment = self.get("deployment", DEPLOYMENT, true)?.context("the Deployment disappeared")?;
        let number = |value: &serde_json::Value| value.as_u64().unwrap_or(0);
        let status = &deployment["status"];
        if number(&status["observedGeneration"]) < number(&deployment["metadata"]["generation"]) {
            bail!("the Deployment's controller has not caught up with the applied spec");
        }
        for container in deployment["spec"]["template"]["spec"]["containers"].as_array().into_iter().flatten() {
            let running = container["image"].as_str().unwrap_or_default();
            if !image.is(running) {
                bail!("the Deployment runs {running}, not {image}: something changed it since the apply");
            }
        }
        let (replicas, updated, available) =
            (number(&status["replicas"]), number(&status["updatedReplicas"]), number(&status["availableReplicas"]));
        if replicas == 0 || updated != replicas || available != replicas {
            bail!("{updated} of {replicas} pods run the release and {available} are available: not all pods are new");
        }
        Ok(())
    }
}

impl Platform for Kubernetes {
    const NAME: &'static str = "kubernetes";

    fn preflight(&mut self, image: &Image) -> Result<()> {
        let kubectl =
            Cli::find("kubectl", "install it and point it at the cluster (KUBECONFIG or its current context)")?;
        let file = self.source.join("kustomization.yaml");
        let kustomization: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?)
                .with_context(|| format!("{file} is not YAML"))?;
        self.namespace =
            kustomization["namespace"].as_str().context("kustomization.yaml sets no namespace")?.to_owned();
        let placeholders: Vec<&str> = kustomization["images"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["name"].as_str())
            .collect();
        let text = kubectl.output(&["kustomize", self.source.as_str()], true)?;
        let mut documents = Vec::new();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value =
                Value::deserialize(document).context("`kubectl kustomize` printed something other than YAML")?;
            if !value.is_null() {
                documents.push(value);
            }
        }
        for document in &mut documents {
            set_image(document, &placeholders, image);
        }
        let problems = validate(&documents, image);
        if !problems.is_empty() {
            bail!("{} rendered for {image} is not fit to deploy:\n  - {}", self.source, problems.join("\n  - "));
        }
        let job = documents.iter().find(|doc| is(doc, "Job", JOB)).map(|job| &job["spec"]["activeDeadlineSeconds"]);
        self.job_deadline = Duration::from_secs(job.and_then(Value::as_u64).unwrap_or_default());
        let rendered = documents.iter().map(serde_yaml_ng::to_string).collect::<Result<Vec<_>, _>>()?;
        if let Some(dir) = self.rendered.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
        }
        let header = format!("# {} rendered for {image}\n", self.source);
        std::fs::write(&self.rendered, header + &rendered.join("---\n"))
            .with_context(|| format!("writing {}", self.rendered))?;
        crate::secrets::kubernetes()?;
        self.kubectl = Some(kubectl.with(&["--namespace", &self.namespace]));
        Ok(())
    }

    fn serving(&mut self) -> Result<Option<String>> {
        let Some(deployment) = self.get("deployment", DEPLOYMENT, true)? else {
            return Ok(None);
        };
        self.previous_revision =
            deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str().map(str::to_owned);
        let containers = deployment["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
        let app = containers.iter().find(|c| c["name"] == "app").or(containers.first());
        Ok(app.and_then(|container| container["image"].as_str()).map(str::to_owned))
    }

    fn skipped(&self, state: &str) -> Option<&'static str> {
        match state {
            "SWITCH" => Some("the rolling update moves traffic pod by pod, as each new pod becomes ready"),
            "DRAIN" => Some("Kubernetes drains each old pod: preStop sleep, then SIGTERM and the grace period"),
            _ => None,
        }
    }

    fn run(&mut self, state: &'static str, image: &Image) -> Result<()> {
        let deployment = format!("deployment/{DEPLOYMENT}");
        match state {
            "MIGRATE" => self.migrate(),
            "CANDIDATE" => self.kubectl()?.run(&["apply", "--filename", self.rendered.as_str()]),
            "HEALTHY" => self.kubectl()?.run(&["rollout", "status", &deployment, ROLLOUT_TIMEOUT]),
            "VERIFY" => self.verify(image),
            _ => bail!("the kubernetes target has no work for {state}"),
        }
    }

    fn undo(&mut self, _failed_in: &str) -> Result<()> {
        let revision = self.previous_revision.as_deref().context("the Deployment had no revision to go back to")?;
        let (kubectl, deployment) = (self.kubectl()?, format!("deployment/{DEPLOYMENT}"));
        // To the revision that served, not merely the one before: the apply may not have made a new one.
        kubectl.run(&["rollout", "undo", &deployment, &format!("--to-revision={revision}")])?;
        kubectl.run(&["rollout", "status", &deployment, ROLLOUT_TIMEOUT])
    }
}

fn is(document: &Value, kind: &str, name: &str) -> bool {
    document["kind"].as_str() == Some(kind) && document["metadata"]["name"].as_str() == Some(name)
}

/// The containers of a workload's pod template (init containers included).
fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"].into_iter().flat_map(|key| pod[key].as_sequence().into_iter().flatten())
}

/// Replaces every image named in kustomization.yaml's `images` with the release, wherever it is used.
fn set_image(value: &mut Value, placeholders: &[&str], image: &Image) {
    match value {
        Value::Mapping(mapping) => {
            for (key, child) in mapping.iter_mut() {
                let used_by_containers = matches!(key.as_str(), Some("containers" | "initContainers"));
                if let (true, Value::Sequence(containers)) = (used_by_containers, &mut *child) {
                    for container in containers {
                        let name = container["image"].as_str().and_then(|image| Image::parse(image).ok());
                        if name.is_some_and(|name| placeholders.contains(&name.name())) {
                            container["image"] = Value::String(image.to_string());
                        }
                    }
                } else {
                    set_image(child, placeholders, image);
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|item| set_image(item, placeholders, image)),
        _ => {}
    }
}

/// What a rendering must hold before anything is applied; every problem, not just the first.
fn validate(documents: &[Value], image: &Image) -> Vec<String> {
    let mut problems = Vec::new();
    let find = |kind: &str, name: &str| documents.iter().find(|doc| is(doc, kind, name));
    let (deployment, job) = (find("Deployment", DEPLOYMENT), find("Job", JOB));
    if deployment.is_none() {
        problems.push(format!("no Deployment `{DEPLOYMENT}`: there is nothing to roll out"));
    }
    if job.is_none() {
        problems.push(format!("no Job `{JOB}`: the release's migrations would never run"));
    }
    let pre_deploy = |doc: &Value| doc["metadata"]["labels"][PRE_DEPLOY].as_str() == Some("true");
    for (what, workload) in [("Deployment", deployment), ("Job", job)] {
        let Some(workload) = workload else { continue };
        let pod = &workload["spec"]["template"]["spec"];
        let pod_non_root = pod["securityContext"]["runAsNonRoot"].as_bool() == Some(true);
        for container in containers(pod) {
            let name = format!("{what} container {}", container["name"].as_str().unwrap_or("?"));
            let security = &container["securityContext"];
            let running = container["image"].as_str().unwrap_or_default();
            if !image.is(running) {
                problems.push(format!("{name} runs {running:?}, not the release {image} (a placeholder left?)"));
            }
            if !pod_non_root && security["runAsNonRoot"].as_bool() != Some(true) {
                problems.push(format!("{name} may run as root: set runAsNonRoot: true"));
            }
            if security["readOnlyRootFilesystem"].as_bool() != Some(true) {
                problems.push(format!("{name} has a writable root filesystem: set readOnlyRootFilesystem: true"));
            }
            if security["allowPrivilegeEscalation"].as_bool() != Some(false) {
                problems.push(format!("{name} may gain privileges: set allowPrivilegeEscalation: false"));
            }
            if what == "Deployment" {
                for probe in ["readinessProbe", "livenessProbe"] {
                    if container[probe].is_null() {
                        problems.push(format!("{name} has no {probe}"));
                    }
                }
            }
        }
    }
    if let Some(deployment) = deployment {
        let unavailable = &deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"];
        if !(unavailable.as_u64() == Some(0) || matches!(unavailable.as_str(), Some("0" | "0%"))) {
            problems
                .push("the Deployment's rollingUpdate.maxUnavailable is not 0: a rollout would drop capacity".into());
        }
        if pre_deploy(deployment) {
            problems.push(format!("the Deployment carries {PRE_DEPLOY}: it would start before the migrations ran"));
        }
    }
    if let Some(job) = job {
        if !pre_deploy(job) {
            problems.push(format!("the Job lacks the label {PRE_DEPLOY}: \"true\", so it would never run first"));
        }
        if job["spec"]["activeDeadlineSeconds"].as_u64().is_none() {
            problems
                .push("the Job has no activeDeadlineSeconds: a hung migration would hold the deploy forever".into());
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// The committed manifests, as `kubectl kustomize` would list them (the generated ConfigMap aside).
    fn committed() -> Vec<Value> {
        let dir = project::root().join("deploy/k8s");
        let kustomization: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).expect("read"))
                .expect("YAML");
        kustomization["resources"]
            .as_sequence()
            .expect("resources")
            .iter()
            .map(|file| {
                let text = std::fs::read_to_string(dir.join(file.as_str().expect("a path"))).expect("read");
                serde_yaml_ng::from_str(&text).expect("YAML")
            })
            .collect()
    }

    fn rendered(image: &Image) -> Vec<Value> {
        let mut documents = committed();
        for document in &mut documents {
            set_image(document, &["ghcr.io/OWNER/shipshape-app"], image);
        }
        documents
    }

    #[test]
    fn the_committed_manifests_render_fit_to_deploy() {
        let image = Image::release(&format!("ghcr.io/acme/shipshape-app@{DIGEST}")).expect("valid");
        assert_eq!(validate(&rendered(&image), &image), Vec::<String>::new());
        assert!(!validate(&committed(), &image).is_empty(), "the placeholder image passed");
    }

    #[test]
    fn every_problem_of_a_rendering_is_named() {
        let image = Image::release("ghcr.io/acme/shipshape-app:v1").expect("valid");
        let mut documents = rendered(&image);
        let deployment = documents.iter_mut().find(|doc| is(doc, "Deployment", DEPLOYMENT)).expect("deployment");
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = Value::from(1);
        let pod = &mut deployment["spec"]["template"]["spec"];
        pod["securityContext"]["runAsNonRoot"] = Value::Bool(false);
        let container = &mut pod["containers"][0];
        container["securityContext"]["runAsNonRoot"] = Value::Bool(false);
        container["securityContext"]["readOnlyRootFilesystem"] = Value::Bool(false);
        container["image"] = Value::from("ghcr.io/OWNER/shipshape-app:RELEASE");
        container.as_mapping_mut().expect("a mapping").remove("readinessProbe");
        documents.retain(|doc| !is(doc, "Job", JOB));
        let problems = validate(&documents, &image).join("\n");
        for expected in [
            "maxUnavailable is not 0",
            "may run as root",
            "writable root filesystem",
            "has no readinessProbe",
            "\"ghcr.io/OWNER/shipshape-app:RELEASE\", not the release",
            "no Job `app-migrate`",
        ] {
            assert!(problems.contains(expected), "{expected:?} missing from:\n{problems}");
        }
    }
}
