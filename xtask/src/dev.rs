//! `cargo xtask dev`: the service on a laptop. A throwaway PostgreSQL, migrations, then `app serve`
//! in development mode; Ctrl-C stops the service (gracefully), then the database.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::preflight::{self, InstallArgs};
use crate::tools::{self, Tool};
use crate::{cleanup, postgres, project};

/// How long the service gets to shut down on Ctrl-C before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn run(install: InstallArgs) -> Result<()> {
    // The C toolchain builds the service; the database may come from elsewhere.
    let needs: Vec<&Tool> = std::iter::once(&tools::C_TOOLCHAIN).chain(postgres::needs()).collect();
    preflight::run(&needs, install)?;
    let database = postgres::provide()?;
    duct::cmd(project::cargo(), ["build", "--package", "app"])
        .dir(project::root())
        .run()
        .context("building the service")?;
    let binary = project::target_dir().join("debug/app").into_std_path_buf();
    let app = |args: &[&str]| duct::cmd(&binary, args).env("APP_ENV", "development").env("DATABASE_URL", &database.url);
    app(&["migrate"]).run().context("migrating the database")?;
    let server = Arc::new(app(&["serve"]).unchecked().start().context("starting the service")?);
    let _stop = cleanup::register({
        let server = Arc::clone(&server);
        move || stop(&server)
    });
    let listen = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:8000".to_owned());
    let metrics = std::env::var("METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:9090".to_owned());
    println!(
        "\nshipshape is up: http://{listen}/healthz (metrics: http://{metrics}/metrics). Ctrl-C stops everything.\n"
    );
    let output = server.wait()?;
    if !output.status.success() {
        bail!("the service exited with {}", output.status);
    }
    Ok(())
}

/// SIGTERM (the service drains and exits), then SIGKILL if it takes too long.
fn stop(server: &duct::Handle) {
    for pid in server.pids() {
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if matches!(server.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = server.kill();
}
