//! The `app` binary as operators run it: `check --deploy`, configuration errors, `serve` refusing
//! an unsafe production configuration, `serve` + `healthcheck` + SIGTERM, and `migrate`.

mod support;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const GOOD_KEY: &str = "Zq8x1Lr4Vt7Yb2Nc5Md9Kf3Hg6Jw0Pa8Se1Ru4Ti7Oy2Uz5Xv9Qm3";

fn binary(vars: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_app"));
    command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    // Under coverage the binary must keep writing its profile where the instrumented run collects it.
    if let Ok(profile) = std::env::var("LLVM_PROFILE_FILE") {
        command.env("LLVM_PROFILE_FILE", profile);
    }
    for (key, value) in vars {
        command.env(key, value);
    }
    command
}

fn production(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut vars = vec![
        ("APP_ENV", "production"),
        ("DATABASE_URL", "postgres://app@127.0.0.1:1/app"),
        ("SECRET_KEY", GOOD_KEY),
        ("ALLOWED_HOSTS", "app.example.com"),
        ("SECURE_HSTS_PRELOAD", "true"),
        ("TRUSTED_PROXIES", "10.0.0.0/8"),
    ];
    vars.extend_from_slice(extra);
    vars
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[test]
fn check_deploy_passes_a_hardened_production_configuration() {
    let output = binary(&production(&[]), &["check", "--deploy"]).output().expect("runs");
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("0 issue(s)"));
}

#[test]
fn check_deploy_says_which_error_report_and_trace_exports_are_configured() {
    let output = binary(&production(&[]), &["check", "--deploy"]).output().expect("runs");
    let report = text(&output);
    assert!(report.contains("error reports: off (SENTRY_DSN unset)\ntraces: off"), "{report}");
    let dsn = "https://f00dfeedf00dfeed@errors.example.com/7";
    let vars = production(&[("SENTRY_DSN", dsn), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]);
    let output = binary(&vars, &["check", "--deploy", "--format", "json"]).output().expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["observability"]["error reports"], "Sentry (SENTRY_DSN)");
    assert_eq!(report["observability"]["traces"], "OTLP/HTTP to http://collector:4318");
    assert!(!text(&output).contains("f00dfeed"), "the DSN was printed");
}

#[test]
fn check_deploy_fails_on_findings_and_speaks_json() {
    let output = binary(
        &production(&[("DEBUG", "true"), ("REFERRER_POLICY", "everywhere")]),
        &["check", "--deploy", "--format", "json"],
    )
    .output()
    .expect("runs");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let ids: Vec<&str> =
        report["findings"].as_array().expect("findings").iter().filter_map(|f| f["id"].as_str()).collect();
    assert_eq!(ids, ["security.W018", "security.E023"]);
    assert!(report["findings"][0]["hint"].as_str().is_some_and(|hint| !hint.is_empty()));
}

#[test]
fn configuration_problems_are_all_listed_with_their_fix() {
    let output = binary(&[("APP_ENV", "prod"), ("LISTEN_ADDR", "nowhere"), ("MAX_BODY_BYTES", "big")], &["check"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for variable in ["APP_ENV", "LISTEN_ADDR", "MAX_BODY_BYTES", "DATABASE_URL"] {
        assert!(stderr.contains(&format!("{variable}:")), "{variable} missing:\n{stderr}");
    }
    assert!(stderr.matches("(fix: ").count() >= 4, "{stderr}");
}

#[test]
fn serve_refuses_an_unsafe_production_configuration_naming_every_problem() {
    let output = binary(&[("APP_ENV", "production"), ("DATABASE_URL", "postgres://app@127.0.0.1:1/app")], &["serve"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to start in production"), "{stderr}");
    for id in ["security.W009", "security.W020", "security.W021", "proxy.W001"] {
        assert!(stderr.contains(id), "{id} missing:\n{stderr}");
    }
}

/// `serve` on `listen` until `healthcheck` passes, then SIGTERM: exit 0. Returns the log lines.
fn serve_until_healthy_then_terminate(listen: &str) -> String {
    let database = std::env::var("DATABASE_URL").expect("DATABASE_URL (run through `cargo xtask test`)");
    let metrics = format!("127.0.0.1:{}", free_port());
    let vars = [
        ("APP_ENV", "development"),
        ("DATABASE_URL", database.as_str()),
        ("MIGRATE_ON_START", "false"),
        ("LISTEN_ADDR", listen),
        ("METRICS_ADDR", metrics.as_str()),
        ("LOG_FORMAT", "json"),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    let server = binary(&vars, &["serve"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("serve starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !binary(&vars, &["healthcheck"]).status().expect("healthcheck runs").success() {
        assert!(Instant::now() < deadline, "the server never became healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(Command::new("kill").args(["-TERM", &server.id().to_string()]).status().expect("kill").success());
    let output = server.wait_with_output().expect("exits");
    assert!(output.status.success(), "{}", text(&output));
    let logs = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        logs.lines().all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok()),
        "JSON lines only:\n{logs}"
    );
    assert!(logs.contains("\"path\":\"/healthz\""), "the healthcheck was logged:\n{logs}");
    assert!(!binary(&vars, &["healthcheck"]).status().expect("runs").success(), "nothing listens any more");
    logs
}

#[test]
fn serve_answers_healthcheck_and_exits_zero_on_sigterm() {
    serve_until_healthy_then_terminate(&format!("127.0.0.1:{}", free_port()));
}

#[test]
fn serve_listens_on_a_unix_socket_replacing_a_stale_one_and_removes_it_on_exit() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let socket = dir.join("app.sock");
    // What a killed server leaves behind: the socket file, nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    assert!(socket.exists());
    let logs = serve_until_healthy_then_terminate(&format!("unix:{}", socket.display()));
    assert!(logs.contains(&format!("unix:{}", socket.display())), "the address is logged:\n{logs}");
    // A peer on the socket runs on this host: it counts as 127.0.0.1.
    assert!(logs.contains("\"remote_ip\":\"127.0.0.1\""), "{logs}");
    assert!(!socket.exists(), "the socket file was left behind");
    let _ = std::fs::remove_dir_all(dir);
}

/// An empty schema beside the test's own, and a `DATABASE_URL` that puts the binary in it.
async fn scratch_schema(db: &support::TestDb) -> (String, String) {
    let scratch = format!("{}_cli", db.schema);
    sqlx::query(&format!(r#"CREATE SCHEMA "{scratch}""#)).execute(&db.pool).await.expect("schema");
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let separator = if base.contains('?') { '&' } else { '?' };
    (scratch.clone(), format!("{base}{separator}options=-c%20search_path%3D{scratch}"))
}

#[tokio::test]
async fn migrate_applies_the_migrations_lists_pending_ones_and_gives_up_on_a_held_lock() {
    let db = support::TestDb::new().await;
    let (scratch, url) = scratch_schema(&db).await;
    let pending = |vars: &[(&str, &str)]| {
        let output = binary(vars, &["migrate", "--pending"]).output().expect("runs");
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout).lines().count()
    };
    let before = pending(&[("DATABASE_URL", &url)]);
    let output = binary(&[("DATABASE_URL", &url)], &["migrate"]).output().expect("runs");
    let after = pending(&[("DATABASE_URL", &url)]);
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{scratch}.service_events"))
        .fetch_one(&db.pool)
        .await
        .expect("query");

    // A lock held on a table the migrator reads: it gives up after MIGRATION_LOCK_TIMEOUT.
    let mut holder = db.pool.begin().await.expect("transaction");
    sqlx::query(&format!(r#"LOCK TABLE "{scratch}"._sqlx_migrations IN ACCESS EXCLUSIVE MODE"#))
        .execute(&mut *holder)
        .await
        .expect("lock");
    let blocked =
        binary(&[("DATABASE_URL", &url), ("MIGRATION_LOCK_TIMEOUT", "200ms")], &["migrate"]).output().expect("runs");
    holder.rollback().await.expect("rollback");
    sqlx::query(&format!(r#"DROP SCHEMA "{scratch}" CASCADE"#)).execute(&db.pool).await.expect("drop");

    assert!(output.status.success(), "{}", text(&output));
    assert!(exists, "the migration ran in the given schema");
    let embedded = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).expect("migrations").count();
    assert_eq!((before, after), (embedded, 0), "pending before and after");
    assert!(!blocked.status.success(), "{}", text(&blocked));
    assert!(text(&blocked).contains("lock timeout"), "{}", text(&blocked));
}

/// `GET /readyz` on `port`: the status code.
fn readyz_status(port: u16) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn an_older_release_migrates_and_serves_after_a_newer_one_migrated_but_refuses_an_edited_migration() {
    let db = support::TestDb::new().await;
    let (scratch, url) = scratch_schema(&db).await;
    assert!(binary(&[("DATABASE_URL", &url)], &["migrate"]).output().expect("runs").status.success());
    // What a newer release leaves behind when this one is rolled back to.
    let future = 99_991_231_000_000_i64;
    sqlx::query(&format!(
        r#"INSERT INTO "{scratch}"._sqlx_migrations (version, description, success, checksum, execution_time)
           VALUES ($1, 'from a newer release', true, '\x00', 1)"#
    ))
    .bind(future)
    .execute(&db.pool)
    .await
    .expect("a future migration recorded");

    let migrate = binary(&[("DATABASE_URL", &url)], &["migrate"]).output().expect("runs");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let metrics = format!("127.0.0.1:{}", free_port());
    let vars = [
        ("DATABASE_URL", url.as_str()),
        ("MIGRATE_ON_START", "true"),
        ("LISTEN_ADDR", listen.as_str()),
        ("METRICS_ADDR", metrics.as_str()),
    ];
    let mut server = binary(&vars, &["serve"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ready = None;
    while ready != Some(200) && Instant::now() < deadline && server.try_wait().expect("wait").is_none() {
        std::thread::sleep(Duration::from_millis(100));
        ready = readyz_status(port);
    }
    let _ = server.kill();
    let served = server.wait_with_output().expect("exits");

    // The checksum of a migration this release knows no longer matches: refused.
    sqlx::query(&format!(
        r#"UPDATE "{scratch}"._sqlx_migrations SET checksum = '\x00' WHERE version = (SELECT min(version) FROM "{scratch}"._sqlx_migrations)"#
    ))
    .execute(&db.pool)
    .await
    .expect("checksum changed");
    let edited = binary(&[("DATABASE_URL", &url)], &["migrate"]).output().expect("runs");
    sqlx::query(&format!(r#"DROP SCHEMA "{scratch}" CASCADE"#)).execute(&db.pool).await.expect("drop");

    assert!(migrate.status.success(), "{}", text(&migrate));
    let migrated = text(&migrate);
    let unknown: Vec<&str> = migrated.lines().filter(|line| line.contains("does not know")).collect();
    assert_eq!(unknown.len(), 1, "one line names the unknown migrations:\n{migrated}");
    assert!(unknown[0].contains(&future.to_string()), "{}", unknown[0]);
    assert_eq!(ready, Some(200), "serve never answered /readyz 200:\n{}", text(&served));
    assert!(text(&served).contains(&future.to_string()), "serve's migration names it too:\n{}", text(&served));
    assert!(!edited.status.success(), "{}", text(&edited));
    assert!(text(&edited).contains("previously applied but has been modified"), "{}", text(&edited));
}
