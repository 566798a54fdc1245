//! `xtask secrets check --target host|kubernetes|fly`: a host root with files on disk, and the fake
//! `kubectl` and `flyctl` of `tests/fakes` (whose answers carry values), asserting the exact commands,
//! that every missing variable is named, and that no value is ever printed.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;
use support::Run;

/// In every value the check can see: a file's contents, the Secret's data, the Fly digests.
const SENTINEL: &str = "SENTINEL";

struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("secrets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("workspace/deploy/k8s")).expect("mkdir");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
        let fly = std::fs::read_to_string(repo.join("deploy/fly.toml")).expect("read fly.toml");
        std::fs::write(dir.join("workspace/deploy/fly.toml"), fly.replace("CHANGE-ME", "test")).expect("write");
        for file in ["kustomization.yaml", "app-config.env"] {
            std::fs::copy(repo.join("deploy/k8s").join(file), dir.join("workspace/deploy/k8s").join(file))
                .expect("copy");
        }
        std::fs::write(dir.join("calls.log"), "").expect("write");
        Self { dir }
    }

    fn check(&self, target: &str, env: &[(&str, &str)]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["secrets", "check", "--target", target, "--root"])
            .arg(self.dir.join("root"))
            .env("PATH", support::fakes_first_on_path())
            .env("FAKE_DIR", &self.dir)
            .env("XTASK_WORKSPACE", self.dir.join("workspace"))
            .env_remove("DEPLOY_SSH")
            .envs(env.iter().copied())
            .output()
            .expect("xtask runs");
        let run = Run(output);
        assert!(
            !run.text().contains(SENTINEL) && !run.text().contains("U0VOVElORUw"),
            "a value shown:\n{}",
            run.text()
        );
        run
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("calls.log")).expect("read").lines().map(str::to_owned).collect()
    }

    /// A secret file holding the sentinel, with `mode`.
    fn secret_file(&self, name: &str, mode: u32) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, format!("{SENTINEL}-{name}")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path.display().to_string()
    }

    fn deploy_env(&self, lines: &[String]) {
        std::fs::create_dir_all(self.dir.join("root")).expect("mkdir");
        std::fs::write(self.dir.join("root/deploy.env"), lines.join("\n") + "\n").expect("write");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_host_target_needs_each_variable_in_deploy_env_and_private_secret_files() {
    let scratch = Scratch::new("host");
    let database_url = scratch.secret_file("database_url", 0o644);
    scratch.deploy_env(&[
        "APP_ENV=production".to_owned(),
        format!("DATABASE_URL_FILE={database_url}"),
        format!("SECRET_KEY_FILE={}", scratch.dir.join("absent").display()),
        "TRUSTED_PROXIES=127.0.0.1/32".to_owned(),
        "DEPLOY_KEEP_RELEASES=3".to_owned(),
    ]);
    let run = scratch.check("host", &[]).failed(&[
        "lacks 3 of the required variables",
        &format!("DATABASE_URL_FILE={database_url} is readable by every user: chmod o-rwx"),
        "SECRET_KEY_FILE=",
        "No such file",
        "ALLOWED_HOSTS is not in deploy.env",
    ]);
    assert!(!run.text().contains("APP_ENV") && !run.text().contains("TRUSTED_PROXIES"), "{}", run.text());

    let database_url = scratch.secret_file("database_url", 0o640);
    let secret_key = scratch.secret_file("secret_key", 0o600);
    scratch.deploy_env(&[
        "APP_ENV=production".to_owned(),
        format!("DATABASE_URL_FILE={database_url}"),
        format!("SECRET_KEY_FILE={secret_key}"),
        format!("ALLOWED_HOSTS={SENTINEL}.example.com"),
        "TRUSTED_PROXIES=127.0.0.1/32".to_owned(),
    ]);
    let run = scratch.check("host", &[]).ok();
    assert!(run.text().contains("all 5 required variables are there"), "{}", run.text());
}

#[test]
fn the_kubernetes_target_reads_the_secrets_keys_only() {
    let scratch = Scratch::new("kubernetes");
    let secret = "kubectl --namespace shipshape get secret app-secrets --ignore-not-found --output=json";
    scratch.check("kubernetes", &[]).ok();
    scratch.check("kubernetes", &[("FAKE_SECRET_KEYS", "secret_key")]).failed(&[
        "lacks 1 of the required variables",
        "DATABASE_URL is not in the Secret shipshape/app-secrets (key database_url)",
    ]);
    scratch.check("kubernetes", &[("FAKE_SECRET_KEYS", "none")]).failed(&["DATABASE_URL is not", "SECRET_KEY is not"]);
    assert_eq!(scratch.calls(), [secret, secret, secret]);

    // A secret among the ConfigMap's settings is in the repository: refused even when the Secret has it.
    let config = scratch.dir.join("workspace/deploy/k8s/app-config.env");
    let settings = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, settings.replace("ALLOWED_HOSTS=", "SECRET_KEY=x\n#ALLOWED_HOSTS=")).expect("write");
    scratch.check("kubernetes", &[]).failed(&[
        "SECRET_KEY is in deploy/k8s/app-config.env, in the repository",
        "ALLOWED_HOSTS is not in deploy/k8s/app-config.env",
    ]);
}

#[test]
fn the_fly_target_reads_the_apps_secret_names() {
    let scratch = Scratch::new("fly");
    scratch.check("fly", &[]).ok();
    scratch.check("fly", &[("FAKE_FLY_SECRETS", "")]).failed(&[
        "lacks 2 of the required variables",
        "DATABASE_URL is not a secret of the Fly app shipshape-test",
        "SECRET_KEY is not a secret of the Fly app shipshape-test",
    ]);
    assert_eq!(scratch.calls(), ["flyctl secrets list --app shipshape-test --json"; 2]);
}
