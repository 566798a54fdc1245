//! `xtask deploy --target kubernetes|fly` against the fake `kubectl` and `flyctl` in `tests/fakes`, first
//! on PATH: they log their arguments and answer as the real tools do, failing where a test says. The
//! tests assert the exact commands, in order: deploys that succeed, a failed migration that changes
//! nothing, failures after the change that are undone. No real cluster or Fly app is involved.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{Run, app_binary, psql, release_with_a_migration};

const OLD: &str = "ghcr.io/acme/shipshape-app@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str = "ghcr.io/acme/shipshape-app@sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// A scratch directory: the fakes' log and state, the deploy's root, and a workspace whose fly.toml
/// names an app (the committed one holds a placeholder).
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("platforms-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("workspace/deploy")).expect("mkdir");
        let fly = std::fs::read_to_string(repo().join("deploy/fly.toml")).expect("read fly.toml");
        std::fs::write(dir.join("workspace/deploy/fly.toml"), fly.replace("CHANGE-ME", "test")).expect("write");
        std::fs::write(dir.join("calls.log"), "").expect("write");
        Self { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// `xtask deploy --target <target> [--image <image>]` with the fakes first on PATH.
    fn command(&self, target: &str, image: Option<&str>, env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command
            .args(["deploy", "--target", target, "--release", "r2", "--root"])
            .arg(self.root())
            .args(image.map(|image| ["--image", image]).into_iter().flatten())
            .env("PATH", support::fakes_first_on_path())
            .env("FAKE_DIR", &self.dir)
            .env("FAKE_SERVING", OLD)
            .env_remove("DEPLOY_TARGET")
            .env_remove("DEPLOY_ROOT")
            .env_remove("DEPLOY_IMAGE")
            .env_remove("XTASK_WORKSPACE")
            .envs(env.iter().copied());
        if target == "fly" {
            command.env("XTASK_WORKSPACE", self.dir.join("workspace"));
        }
        command
    }

    fn deploy(&self, target: &str, image: Option<&str>, env: &[(&str, &str)]) -> Run {
        Run(self.command(target, image, env).output().expect("xtask runs"))
    }

    /// The commands the fakes ran, with the scratch and repository paths written as <dir> and <repo>.
    fn calls(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("calls.log")).expect("read the log");
        let (dir, repo) = (self.dir.display().to_string(), repo().display().to_string());
        log.lines().map(|line| line.replace(&dir, "<dir>").replace(&repo, "<repo>")).collect()
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        let log = std::fs::read_to_string(self.root().join("audit.log")).unwrap_or_default();
        log.lines().map(|line| serde_json::from_str(line).expect("a JSON record")).collect()
    }

    fn last_record(&self) -> serde_json::Value {
        self.audit().pop().expect("an audit record")
    }

    /// The last audit record says the deploy failed in `state`.
    fn assert_failed_in(&self, state: &str) {
        let record = self.last_record();
        assert_eq!((&record["result"], &record["state"]), (&"failed".into(), &state.into()), "{record}");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_owned()
}

const KUBERNETES_SECRET: &str = "get secret app-secrets --ignore-not-found --output=json";

fn kubectl(args: &str) -> String {
    format!("kubectl --namespace shipshape {args}")
}

/// What every kubernetes deploy runs up to the migration Job's outcome.
fn kubernetes_until_migrated() -> Vec<String> {
    vec![
        "kubectl kustomize <repo>/deploy/k8s".to_owned(),
        kubectl(KUBERNETES_SECRET),
        kubectl("get deployment app --ignore-not-found --output=json"),
        kubectl("delete job app-migrate --ignore-not-found --wait"),
        kubectl("apply --filename <dir>/root/kubernetes.yaml --selector shipshape.io/pre-deploy=true"),
        kubectl("get job app-migrate --ignore-not-found --output=json"),
    ]
}

fn kubernetes_rollout() -> Vec<String> {
    vec![kubectl("apply --filename <dir>/root/kubernetes.yaml"), kubectl("rollout status deployment/app --timeout=10m")]
}

fn fly(args: &str) -> String {
    match args.strip_prefix("deploy ") {
        Some(image) => format!("flyctl deploy --config <dir>/workspace/deploy/fly.toml --image {image}"),
        None => format!("flyctl {args}"),
    }
}

const FLY_MACHINES: &str = "machines list --app shipshape-test --json";
const FLY_SECRETS: &str = "secrets list --app shipshape-test --json";

/// A fly deploy of NEW whose VERIFY failed, undone by deploying OLD again.
fn fly_undone_after_verify() -> [String; 6] {
    [
        fly(FLY_SECRETS),
        fly(FLY_MACHINES),
        fly(&format!("deploy {NEW}")),
        fly(FLY_MACHINES),
        fly(&format!("deploy {OLD}")),
        fly(FLY_MACHINES),
    ]
}

#[test]
fn a_kubernetes_deploy_migrates_then_rolls_out_the_rendered_release() {
    let scratch = Scratch::new("k8s-ok");
    let run = scratch.deploy("kubernetes", Some(NEW), &[]).ok();
    let expected: Vec<String> = [kubernetes_until_migrated(), kubernetes_rollout()]
        .concat()
        .into_iter()
        .chain([kubectl("get deployment app --ignore-not-found --output=json")])
        .collect();
    assert_eq!(scratch.calls(), expected, "{}", run.text());
    for line in ["PREFLIGHT ok", "STAGE     skipped", "BACKUP    skipped", "SWITCH    skipped", "FINALIZE  ok"] {
        assert!(run.text().contains(line), "missing {line:?} in:\n{}", run.text());
    }
    let rendered = std::fs::read_to_string(scratch.root().join("kubernetes.yaml")).expect("the rendered manifests");
    assert_eq!(rendered.matches(&format!("image: {NEW}")).count(), 2, "{rendered}");
    assert!(!rendered.contains("OWNER") && !rendered.contains(":RELEASE"), "{rendered}");
    let record = scratch.last_record();
    assert_eq!(
        (&record["target"], &record["result"], &record["image"], &record["previous"], &record["release"]),
        (&"kubernetes".into(), &"deployed".into(), &NEW.into(), &OLD.into(), &"r2".into())
    );
    assert!(record["durations"]["HEALTHY"].is_number() && record["who"].is_string(), "{record}");
    assert!(!scratch.root().join("platform-journal.json").exists());
}

#[test]
fn a_kubernetes_rollout_that_fails_is_undone_to_the_previous_revision() {
    let scratch = Scratch::new("k8s-rollout");
    scratch.deploy("kubernetes", Some(NEW), &[("FAKE_ROLLOUT_FAILS", "1")]).failed(&[
        "HEALTHY failed",
        "undone: the previous release serves again",
        "exceeded its progress deadline",
    ]);
    let expected: Vec<String> = [kubernetes_until_migrated(), kubernetes_rollout()]
        .concat()
        .into_iter()
        .chain([
            kubectl("rollout undo deployment/app --to-revision=3"),
            kubectl("rollout status deployment/app --timeout=10m"),
        ])
        .collect();
    assert_eq!(scratch.calls(), expected);
    assert!(!scratch.dir.join("deployed-image").exists(), "the fake cluster still runs the new release");
    scratch.assert_failed_in("HEALTHY");
}

#[test]
fn a_failed_migration_job_applies_nothing_of_the_new_release() {
    let scratch = Scratch::new("k8s-migrate");
    scratch.deploy("kubernetes", Some(NEW), &[("FAKE_JOB", "Failed")]).failed(&[
        "MIGRATE failed",
        "job/app-migrate failed (BackoffLimitExceeded",
        "logs job/app-migrate",
        "the previous one still serves",
    ]);
    assert_eq!(scratch.calls(), kubernetes_until_migrated());
    assert!(!scratch.dir.join("deployed-image").exists());
    scratch.assert_failed_in("MIGRATE");
}

#[test]
fn a_fly_deploy_is_verified_on_every_machine() {
    let scratch = Scratch::new("fly-ok");
    let run = scratch.deploy("fly", Some(NEW), &[]).ok();
    assert_eq!(
        scratch.calls(),
        [fly(FLY_SECRETS), fly(FLY_MACHINES), fly(&format!("deploy {NEW}")), fly(FLY_MACHINES)],
        "{}",
        run.text()
    );
    for line in ["MIGRATE   skipped (fly.toml's release_command", "VERIFY    ok", "DRAIN     skipped"] {
        assert!(run.text().contains(line), "missing {line:?} in:\n{}", run.text());
    }
    let record = scratch.last_record();
    assert_eq!(
        (&record["target"], &record["result"], &record["previous"]),
        (&"fly".into(), &"deployed".into(), &OLD.into())
    );
}

#[test]
fn machines_left_on_the_old_image_fail_verify_and_the_previous_image_is_deployed_again() {
    let scratch = Scratch::new("fly-stale");
    scratch.deploy("fly", Some(NEW), &[("FAKE_FLY", "stays-old")]).failed(&[
        "VERIFY failed",
        &format!("2 of 2 machines do not run {NEW}"),
        "undone: the previous release serves again",
    ]);
    assert_eq!(scratch.calls(), fly_undone_after_verify());
    scratch.assert_failed_in("VERIFY");
}

#[test]
fn a_fly_deploy_that_changed_no_machine_is_not_deployed_again() {
    let scratch = Scratch::new("fly-fails");
    scratch.deploy("fly", Some(NEW), &[("FAKE_FLY", "fails")]).failed(&[
        "CANDIDATE failed",
        "release command failed",
        "nothing to undo",
    ]);
    assert_eq!(
        scratch.calls(),
        [fly(FLY_SECRETS), fly(FLY_MACHINES), fly(&format!("deploy {NEW}")), fly(FLY_MACHINES)]
    );
}

#[test]
fn a_deploy_missing_a_required_secret_stops_in_preflight_before_any_change() {
    let scratch = Scratch::new("secrets");
    scratch
        .deploy("kubernetes", Some(NEW), &[("FAKE_SECRET_KEYS", "database_url")])
        .failed(&["PREFLIGHT failed", "SECRET_KEY is not in the Secret shipshape/app-secrets (key secret_key)"]);
    assert_eq!(scratch.calls(), ["kubectl kustomize <repo>/deploy/k8s".to_owned(), kubectl(KUBERNETES_SECRET)]);
    std::fs::write(scratch.dir.join("calls.log"), "").expect("write");
    scratch
        .deploy("fly", Some(NEW), &[("FAKE_FLY_SECRETS", "SECRET_KEY")])
        .failed(&["PREFLIGHT failed", "DATABASE_URL is not a secret of the Fly app shipshape-test"]);
    assert_eq!(scratch.calls(), [fly(FLY_SECRETS)]);
    assert!(scratch.audit().is_empty());
}

#[test]
fn a_platform_deploy_needs_a_pinned_image_and_a_named_fly_app() {
    let scratch = Scratch::new("refusals");
    for target in ["kubernetes", "fly"] {
        scratch.deploy(target, None, &[]).failed(&["--image REF", "DEPLOY_IMAGE", "nothing was deployed"]);
        scratch.deploy(target, Some("ghcr.io/acme/shipshape-app"), &[]).failed(&["neither a tag nor a digest"]);
    }
    // The committed fly.toml still names the placeholder app.
    let mut committed = scratch.command("fly", Some(NEW), &[]);
    committed.env_remove("XTASK_WORKSPACE");
    Run(committed.output().expect("xtask runs")).failed(&["PREFLIGHT failed", "`app` = \"shipshape-CHANGE-ME\""]);
    assert_eq!(scratch.calls(), Vec::<String>::new(), "a refused deploy ran a platform command");
    assert!(scratch.audit().is_empty());
}

/// A kubernetes deploy running in the background, held in HEALTHY by a slow rollout.
fn deploy_in_healthy(scratch: &Scratch) -> Child {
    let child = scratch
        .command("kubernetes", Some(NEW), &[("FAKE_ROLLOUT_SECONDS", "5")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("xtask runs");
    let journal = scratch.root().join("platform-journal.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&journal).is_ok_and(|text| text.contains("HEALTHY")) {
        assert!(Instant::now() < deadline, "the deploy never reached HEALTHY");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn a_running_platform_deploy_holds_off_another_and_a_killed_one_is_recorded_by_the_next() {
    let scratch = Scratch::new("lock");
    let mut first = deploy_in_healthy(&scratch);
    scratch.deploy("fly", Some(NEW), &[]).failed(&[
        "LOCK failed",
        "another deploy holds the lock",
        "deploy kubernetes r2",
    ]);
    assert!(first.wait().expect("the first deploy ends").success());

    let mut killed = deploy_in_healthy(&scratch);
    killed.kill().expect("kill");
    killed.wait().expect("reaped");
    let next = scratch.deploy("kubernetes", Some(NEW), &[]).ok();
    assert!(next.text().contains("was interrupted in HEALTHY"), "{}", next.text());
    let results: Vec<_> = scratch.audit().iter().map(|record| record["result"].as_str().map(str::to_owned)).collect();
    let results: Vec<&str> = results.iter().flatten().map(String::as_str).collect();
    assert_eq!(results, ["deployed", "interrupted", "deployed"]);
}

/// A database of the test server migrated by the service, and the images' binaries for the fakes'
/// migrations (`FAKE_IMAGES`): OLD is the service, NEW the service with one migration more.
struct Migrated {
    server: String,
    database: String,
    images: PathBuf,
}

impl Migrated {
    fn new(scratch: &Scratch, name: &str) -> Self {
        let server = std::env::var("DATABASE_URL").expect("set DATABASE_URL (cargo xtask test does)");
        let database = format!("xtask_platform_{name}_{}", std::process::id());
        psql(&server, &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
        psql(&server, &format!("CREATE DATABASE {database}"));
        let images = scratch.dir.join("images");
        std::fs::create_dir_all(&images).expect("mkdir");
        std::os::unix::fs::symlink(app_binary(), images.join(digest(OLD))).expect("symlink");
        let new = release_with_a_migration(&images, digest(NEW), 29_990_101_000_000, "pinned", "");
        assert!(new.is_file());
        let migrated = Self { server, database, images };
        let app = Command::new(app_binary()).arg("migrate").env("DATABASE_URL", migrated.url()).output().expect("app");
        assert!(app.status.success(), "{}", String::from_utf8_lossy(&app.stderr));
        migrated
    }

    fn url(&self) -> String {
        let (base, _) = self.server.rsplit_once('/').expect("a database name");
        format!("{base}/{}", self.database)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("FAKE_IMAGES", self.images.display().to_string()), ("DATABASE_URL", self.url())]
    }

    /// Whether NEW's migration is in the schema.
    fn newer_schema(&self) -> bool {
        psql(
            &self.url(),
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'notes' AND column_name = 'pinned'",
        ) == "1"
    }
}

impl Drop for Migrated {
    fn drop(&mut self) {
        psql(&self.server, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database));
    }
}

fn digest(image: &str) -> &str {
    image.rsplit(':').next().expect("a digest")
}

fn migrate_log(scratch: &Scratch) -> String {
    std::fs::read_to_string(scratch.dir.join("migrate.log")).unwrap_or_default()
}

#[test]
fn the_previous_image_s_migration_job_runs_on_the_newer_schema_of_kubernetes() {
    let scratch = Scratch::new("k8s-undo");
    let db = Migrated::new(&scratch, "k8s");
    let env = db.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(key, value)| (*key, value.as_str())).collect();
    scratch.deploy("kubernetes", Some(NEW), &env).ok();
    assert!(db.newer_schema(), "the new image's Job migrated:\n{}", migrate_log(&scratch));

    // The runbook's undo: the previous image again, whose Job runs its `app migrate` on the newer schema.
    let run = scratch.deploy("kubernetes", Some(OLD), &env).ok();
    let log = migrate_log(&scratch);
    let unknown: Vec<&str> = log.lines().filter(|line| line.contains("does not know")).collect();
    assert_eq!(unknown.len(), 1, "the previous image names the newer migration once:\n{log}\n{}", run.text());
    assert!(unknown[0].contains("29990101000000"), "{log}");
    let deployed = std::fs::read_to_string(scratch.dir.join("deployed-image")).expect("an image deployed");
    assert_eq!(deployed.trim(), OLD);
    assert!(db.newer_schema());
    assert_eq!(scratch.last_record()["result"], "deployed");
}

#[test]
fn fly_s_undo_runs_the_previous_image_s_release_command_on_the_newer_schema() {
    let scratch = Scratch::new("fly-undo");
    let db = Migrated::new(&scratch, "fly");
    let mut env = db.env();
    env.push(("FAKE_FLY", "stays-old".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(key, value)| (*key, value.as_str())).collect();
    // The new image's release_command migrates, its machines never come up: VERIFY fails and the
    // previous image is deployed again, its release_command running on the newer schema.
    scratch.deploy("fly", Some(NEW), &env).failed(&["VERIFY failed", "undone: the previous release serves again"]);
    assert_eq!(scratch.calls(), fly_undone_after_verify());
    assert!(db.newer_schema());
    let log = migrate_log(&scratch);
    assert_eq!(log.matches("does not know").count(), 1, "{log}");
    assert!(log.contains("29990101000000"), "{log}");
    scratch.assert_failed_in("VERIFY");
}
