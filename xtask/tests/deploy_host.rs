//! `xtask deploy --target host` on a real stack: nginx and PostgreSQL on loopback, the service in two
//! slots. A deploy and an automatic rollback under load fail no request and lose no write; a release
//! that never gets healthy, or crashes after the switch, leaves the old one serving; a killed deploy is
//! recovered; two deploys never run at once.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::{
    Run, app_binary, await_listening, fakes_first_on_path, free_port, program, psql, release_with_a_migration,
};

/// nginx in front of two slots, a database, a deploy root; everything stopped when dropped.
struct Stack {
    root: PathBuf,
    nginx: Child,
    port: u16,
    server: String,
    database: String,
}

impl Stack {
    fn new(name: &str) -> Self {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deploy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let conf = root.join("nginx");
        std::fs::create_dir_all(conf.join("tmp")).expect("mkdir");
        let port = free_port();
        let (live, standby) = (root.join("run/live.sock"), root.join("run/standby.sock"));
        let c = conf.display();
        // The upstream of deploy/nginx/upstream.conf, with this stack's paths. `user root`: the service's
        // sockets are 0660 root-owned here (nginx's group on a real host).
        std::fs::write(
            conf.join("nginx.conf"),
            format!(
                "daemon off;\nuser root;\nworker_processes 2;\npid {c}/nginx.pid;\nerror_log {c}/error.log;\nevents {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {c}/tmp/body; proxy_temp_path {c}/tmp/proxy; fastcgi_temp_path {c}/tmp/fastcgi; uwsgi_temp_path {c}/tmp/uwsgi; scgi_temp_path {c}/tmp/scgi;\n\
                 upstream shipshape_app {{ server unix:{} max_fails=0; server unix:{} backup; }}\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://shipshape_app;\n      proxy_http_version 1.1;\n      proxy_set_header Host app.test;\n      proxy_set_header X-Forwarded-Proto https;\n      proxy_next_upstream error timeout;\n    }}\n  }}\n}}\n",
                live.display(),
                standby.display()
            ),
        )
        .expect("write");
        let nginx = program("nginx")
            .args(["-p", &c.to_string(), "-c", &format!("{c}/nginx.conf")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let server = std::env::var("DATABASE_URL").expect("set DATABASE_URL (cargo xtask test does)");
        let database = format!("xtask_deploy_{name}_{}", std::process::id());
        psql(&server, &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
        psql(&server, &format!("CREATE DATABASE {database}"));
        let (base, _) = server.rsplit_once('/').expect("a database name");
        let env = format!(
            "APP_ENV=production\nDATABASE_URL={base}/{database}\nSECRET_KEY=deploy-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz\n\
             ALLOWED_HOSTS=app.test\nTRUSTED_PROXIES=127.0.0.1/32\nSILENCED_CHECKS=security.W021\nDRAIN_DELAY=1s\nSHUTDOWN_TIMEOUT=5s\nAPI_LIMIT_PER_CALLER=1000000/1m\nLOG_FORMAT=json\n\
             DEPLOY_BLUE_METRICS_ADDR=127.0.0.1:{}\nDEPLOY_GREEN_METRICS_ADDR=127.0.0.1:{}\n\
             DEPLOY_HEALTH_TIMEOUT=6\nDEPLOY_VERIFY_SECONDS=3\nDEPLOY_STOP_TIMEOUT=20\nDEPLOY_KEEP_RELEASES=2\n",
            free_port(),
            free_port()
        );
        std::fs::write(root.join("deploy.env"), env).expect("write");
        let stack = Self { root, nginx, port, server, database };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !conf.join("nginx.pid").exists() || TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {:?}",
                std::fs::read_to_string(conf.join("error.log"))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        stack
    }

    fn database_url(&self) -> String {
        let (base, _) = self.server.rsplit_once('/').expect("a database name");
        format!("{base}/{}", self.database)
    }

    fn root(&self) -> &str {
        self.root.to_str().expect("utf-8")
    }

    fn xtask(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command.args(args).args(["--root", self.root()]).env_remove("DEPLOY_TARGET").env_remove("DEPLOY_ROOT");
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        Run(self.xtask(args).output().expect("xtask runs"))
    }

    fn deploy(&self, release: &str, binary: &Path) -> Run {
        self.run(&["deploy", "--target", "host", "--release", release, "--binary", binary.to_str().expect("utf-8")])
    }

    /// A release binary that runs the service for `check`/`migrate` but misbehaves in `serve`.
    fn script(&self, name: &str, serve: &str) -> PathBuf {
        let path = self.root.join(name);
        let app = app_binary();
        std::fs::write(
            &path,
            format!("#!/bin/sh\nif [ \"$1\" = serve ]; then\n{serve}\nfi\nexec {} \"$@\"\n", app.display()),
        )
        .expect("write");
        assert!(Command::new("chmod").arg("+x").arg(&path).status().expect("chmod").success());
        path
    }

    /// A deploy, running in the background, of a release that never gets healthy: it holds the lock
    /// in HEALTHY until its health timeout.
    fn deploy_stuck_in_healthy(&self) -> Child {
        let hangs = self.script("hangs", "exec sleep 600");
        let child = self
            .xtask(&["deploy", "--target", "host", "--release", "hangs", "--binary", hangs.to_str().expect("utf-8")])
            .stdout(Stdio::null())
            .spawn()
            .expect("xtask runs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(self.root.join("journal.json")).is_ok_and(|journal| journal.contains("HEALTHY"))
        {
            assert!(Instant::now() < deadline, "the deploy never reached HEALTHY");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// GET through nginx: the release that answered.
    fn serving(&self) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").expect("send");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        let body = text.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|value| value["release"].as_str().map(str::to_owned))
            .unwrap_or(text)
    }

    fn slot_pids(&self) -> Vec<u32> {
        ["blue", "green"]
            .iter()
            .filter_map(|slot| {
                // `PID START`: the pid and when that process started.
                std::fs::read_to_string(self.root.join(format!("run/{slot}.pid")))
                    .ok()?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.root.join("audit.log")).unwrap_or_default()
    }
}

/// Stops, when dropped, what runs in the slots of a deploy root (by the pid files' first word).
struct StopSlots(PathBuf);

impl Drop for StopSlots {
    fn drop(&mut self) {
        for slot in ["blue", "green"] {
            let pid = std::fs::read_to_string(self.0.join(format!("run/{slot}.pid"))).unwrap_or_default();
            if let Some(pid) = pid.split_whitespace().next() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
}

/// Asserts a progress line for every state of the machine.
fn assert_every_state(run: &Run) {
    for state in [
        "PREFLIGHT",
        "LOCK",
        "STAGE",
        "BACKUP",
        "MIGRATE",
        "CANDIDATE",
        "HEALTHY",
        "SWITCH",
        "VERIFY",
        "DRAIN",
        "FINALIZE",
    ] {
        assert!(run.text().contains(&format!("] {state}")), "no line for {state}:\n{}", run.text());
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for pid in self.slot_pids() {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        // SIGTERM: the master stops its workers before it exits (SIGKILL would orphan them).
        let _ = Command::new("kill").args(["-TERM", &self.nginx.id().to_string()]).status();
        let _ = self.nginx.wait();
        psql(&self.server, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database));
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    unexpected: AtomicU64,
    errors: AtomicU64,
    /// POSTs answered 201: each must be a row in the database.
    created: AtomicU64,
}

impl Tally {
    fn get(&self) -> (u64, u64, u64) {
        (self.ok.load(Ordering::SeqCst), self.unexpected.load(Ordering::SeqCst), self.errors.load(Ordering::SeqCst))
    }
}

/// One response from a connection: its status, `Set-Cookie` and body (every body has a Content-Length).
struct Response {
    status: u16,
    cookie: Option<String>,
    /// `Connection: close`: the server closes after this response (nginx does every 1000 requests).
    close: bool,
    body: String,
}

fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<Response> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
    }
    let status = line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let (mut length, mut cookie, mut close) = (0, None, false);
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("set-cookie") {
                cookie = value.trim().split(';').next().map(str::to_owned);
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.trim().eq_ignore_ascii_case("close");
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Response { status, cookie, close, body: String::from_utf8_lossy(&body).into_owned() })
}

/// A request with a JSON body (if any) and extra header lines.
fn request(method: &str, path: &str, headers: &str, body: &str, keep_alive: bool) -> String {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let content = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len())
    };
    format!("{method} {path} HTTP/1.1\r\nHost: app.test\r\nConnection: {connection}\r\n{headers}{content}\r\n{body}")
}

/// One request on a fresh connection.
fn exchange(port: u16, request: &str) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
    read_response(&mut BufReader::new(stream))
}

/// An account, its session and an API token, made through nginx as a client would: the bearer header.
fn api_token(port: u16) -> String {
    let account = r#"{"email":"load@example.com","password":"plum kettle orbit 7"}"#;
    let signed_up = exchange(port, &request("POST", "/api/v1/accounts", "", account, false)).expect("sign up");
    assert_eq!(signed_up.status, 201, "{}", signed_up.body);
    let session = exchange(port, &request("POST", "/api/v1/session", "", account, false)).expect("log in");
    let cookie = session.cookie.expect("a session cookie");
    let headers = format!("Cookie: {cookie}\r\nSec-Fetch-Site: same-origin\r\n");
    let token = exchange(
        port,
        &request("POST", "/api/v1/tokens", &headers, r#"{"name":"load","password":"plum kettle orbit 7"}"#, false),
    )
    .expect("token");
    assert_eq!(token.status, 201, "{}", token.body);
    let token: serde_json::Value = serde_json::from_str(&token.body).expect("JSON");
    format!("Authorization: Bearer {}\r\n", token["token"].as_str().expect("a token"))
}

/// The load's mix: odd requests create a note (201), even ones read /healthz (200).
fn nth_request(n: u64, auth: &str, keep_alive: bool) -> (String, u16) {
    if n.is_multiple_of(2) {
        (
            request("POST", "/api/v1/notes", auth, r#"{"title":"load","body":"written during a deploy"}"#, keep_alive),
            201,
        )
    } else {
        (request("GET", "/healthz", "", "", keep_alive), 200)
    }
}

/// Clients with no retries: fresh connections and keep-alive connections, GET and POST, until `stop`.
fn load(port: u16, auth: &str, stop: &Arc<AtomicBool>) -> (Arc<Tally>, Arc<Tally>, Vec<std::thread::JoinHandle<()>>) {
    let (fresh, kept) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let mut threads = Vec::new();
    for worker in 0..4 {
        let (stop, tally, auth) = (Arc::clone(stop), Arc::clone(&fresh), auth.to_owned());
        threads.push(std::thread::spawn(move || {
            let mut n = worker;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let (request, expected) = nth_request(n, &auth, false);
                count(&tally, &exchange(port, &request), expected);
            }
        }));
    }
    for _ in 0..2 {
        let (stop, tally, auth) = (Arc::clone(stop), Arc::clone(&kept), auth.to_owned());
        threads.push(std::thread::spawn(move || {
            let mut connection: Option<(TcpStream, BufReader<TcpStream>)> = None;
            let mut n = 0_u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let (request, expected) = nth_request(n, &auth, true);
                if connection.is_none() {
                    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                    let reader = BufReader::new(stream.try_clone().expect("clone"));
                    connection = Some((stream, reader));
                }
                let (stream, reader) = connection.as_mut().expect("connected");
                let outcome = stream.write_all(request.as_bytes()).and_then(|()| read_response(reader));
                // As any HTTP/1.1 client must: a closed connection, or one the server said it closes,
                // is not used again.
                if outcome.as_ref().is_ok_and(|response| response.close) || outcome.is_err() {
                    connection = None;
                }
                count(&tally, &outcome, expected);
            }
        }));
    }
    (fresh, kept, threads)
}

fn count(tally: &Tally, outcome: &std::io::Result<Response>, expected: u16) {
    match outcome {
        Ok(response) if response.status == expected => {
            if expected == 201 {
                tally.created.fetch_add(1, Ordering::SeqCst);
            }
            tally.ok.fetch_add(1, Ordering::SeqCst)
        }
        Ok(_) => tally.unexpected.fetch_add(1, Ordering::SeqCst),
        Err(_) => tally.errors.fetch_add(1, Ordering::SeqCst),
    };
}

#[test]
fn deploys_and_automatic_rollbacks_under_load_fail_no_request_and_lose_no_write() {
    let stack = Stack::new("load");
    let app = app_binary();
    let first = stack.deploy("r1", &app).ok();
    assert_every_state(&first);
    assert!(first.text().contains("backed up to"), "the first deploy has migrations pending: {}", first.text());
    assert_eq!(stack.serving(), "r1");

    // A release that shuts down right after the switch: /readyz turns 503, VERIFY fails, and the
    // deploy switches back while it drains.
    let stops = stack.script(
        "stops",
        &format!(
            "{} serve & child=$!\ntrap 'kill $child; wait $child; exit 1' TERM\nuntil grep -q '\"stops\"' {}/state.json; do sleep 0.05; done\nkill -TERM $child\nwait $child\nexit 1",
            app.display(),
            stack.root()
        ),
    );
    let auth = api_token(stack.port);
    let stop = Arc::new(AtomicBool::new(false));
    let (fresh, kept, threads) = load(stack.port, &auth, &stop);
    std::thread::sleep(Duration::from_millis(500));
    let second = stack.deploy("r2", &app).ok();
    assert_eq!(stack.serving(), "r2");
    stack.deploy("stops", &stops).failed(&["VERIFY failed", "rolled back automatically"]);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().expect("load thread");
    }
    assert!(second.text().contains("BACKUP    skipped"), "{}", second.text());
    assert_eq!(stack.serving(), "r2");
    let (ok, unexpected, errors) = fresh.get();
    let (kept_ok, kept_unexpected, kept_errors) = kept.get();
    println!(
        "load across a deploy and an automatic rollback: fresh connections {ok} ok, {unexpected} unexpected, {errors} errors; keep-alive {kept_ok} ok, {kept_unexpected} unexpected, {kept_errors} errors"
    );
    assert!(ok > 100 && kept_ok > 100, "too little load to prove anything");
    assert_eq!((unexpected, errors), (0, 0), "fresh connections failed");
    assert_eq!((kept_unexpected, kept_errors), (0, 0), "keep-alive connections failed");
    let created = fresh.created.load(Ordering::SeqCst) + kept.created.load(Ordering::SeqCst);
    let rows: u64 = psql(&stack.database_url(), "SELECT count(*) FROM notes").parse().expect("a count");
    println!("notes: {created} POSTs answered 201, {rows} rows");
    assert!(created > 50, "too few POSTs to prove anything");
    assert_eq!(rows, created, "every note answered 201 is stored, and only those");

    let status = stack.run(&["deploy", "status"]).ok();
    assert!(status.text().contains("serving: r2 in the green slot (previous: r1)"), "{}", status.text());
    stack.run(&["rollback"]).ok();
    assert_eq!(stack.serving(), "r1");
    assert!(stack.run(&["deploy", "status"]).ok().text().contains("serving: r1 in the blue slot (previous: r2)"));
    let audit = stack.audit();
    assert_eq!(audit.lines().filter(|line| line.contains(r#""result":"deployed""#)).count(), 2, "{audit}");
    let rollback: serde_json::Value = serde_json::from_str(audit.lines().last().expect("a record")).expect("JSON");
    assert_eq!(
        (&rollback["result"], &rollback["release"], &rollback["previous"]),
        (&"rolled back".into(), &"r1".into(), &"r2".into())
    );
    assert_eq!(stack.slot_pids().len(), 1, "the old slot was not stopped");
}

#[test]
fn releases_that_never_get_healthy_or_crash_after_the_switch_leave_the_old_one_serving() {
    let stack = Stack::new("failing");
    stack.deploy("good", &app_binary()).ok();

    let hangs = stack.script("hangs", "exec sleep 600");
    stack.deploy("hangs", &hangs).failed(&["HEALTHY failed", "not healthy within"]);
    assert_eq!(stack.serving(), "good");
    assert_eq!(stack.slot_pids().len(), 1, "the unhealthy candidate was not stopped");

    let app = app_binary();
    let crashes = stack.script(
        "crashes",
        // Crashes once the deploy has switched to it (state.json names it), whatever the machine's speed.
        &format!(
            "{} serve & child=$!\ntrap 'kill $child' TERM\nuntil grep -q '\"crashes\"' {}/state.json; do sleep 0.05; done\nkill -KILL $child\nexit 1",
            app.display(),
            stack.root()
        ),
    );
    stack.deploy("crashes", &crashes).failed(&["VERIFY failed", "rolled back automatically"]);
    assert_eq!(stack.serving(), "good");
    assert!(stack.run(&["deploy", "status"]).ok().text().contains("serving: good"));
    let audit = stack.audit();
    assert!(
        audit.contains(r#""result":"rolled back automatically""#) && audit.contains(r#""state":"HEALTHY""#),
        "{audit}"
    );
}

#[test]
fn a_killed_deploy_holds_off_others_and_is_recovered_by_the_next() {
    let stack = Stack::new("killed");
    let app = app_binary();
    stack.deploy("good", &app).ok();
    let mut first = stack.deploy_stuck_in_healthy();
    stack.deploy("second", &app).failed(&["another deploy holds the lock", &format!("\"pid\":{}", first.id())]);
    assert!(stack.run(&["deploy", "lock"]).ok().text().contains("HELD"));

    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    assert!(stack.run(&["deploy", "lock"]).ok().text().contains("free"), "the kernel frees the lock");
    assert!(stack.run(&["deploy", "status"]).ok().text().contains("interrupted: the next deploy recovers it"));
    let next = stack.deploy("next", &app).ok();
    assert!(next.text().contains("recovering: a deploy of hangs"), "{}", next.text());
    assert_eq!(stack.serving(), "next");
    assert_eq!(stack.slot_pids().len(), 1);
    assert!(stack.audit().contains(r#""result":"recovered""#));
}

#[test]
fn unlock_needs_confirmation_stops_the_holder_and_unknown_targets_deploy_nothing() {
    let stack = Stack::new("unlock");
    assert!(stack.run(&["deploy", "unlock"]).ok().text().contains("the lock is free"));
    let mut holder = stack.deploy_stuck_in_healthy();
    stack.run(&["deploy", "unlock"]).failed(&["--yes-stop-the-holder", &format!("\"pid\":{}", holder.id())]);
    let unlocked = stack.run(&["deploy", "unlock", "--yes-stop-the-holder"]).ok();
    assert!(unlocked.text().contains("the lock is free"), "{}", unlocked.text());
    assert!(holder.wait().expect("holder exits").code().is_some_and(|code| code != 0));
    assert!(stack.slot_pids().is_empty(), "the stopped deploy left its candidate running");

    stack.run(&["deploy", "--target", "fly"]).failed(&["--image REF", "nothing was deployed"]);
    stack.run(&["rollback"]).failed(&["nothing was deployed"]);
}

#[test]
fn a_failure_between_the_two_link_renames_leaves_the_old_release_serving_and_is_recovered() {
    let stack = Stack::new("switch");
    let app = app_binary();
    stack.deploy("good", &app).ok();
    let links = || {
        ["live", "standby"].map(|link| {
            std::fs::read_link(stack.root.join(format!("run/{link}.sock"))).map(|target| target.display().to_string())
        })
    };
    let with_fault = |release: &str, action: &str| {
        let binary = app.to_str().expect("utf-8");
        Run(stack
            .xtask(&["deploy", "--target", "host", "--release", release, "--binary", binary])
            .env("XTASK_FAILPOINT", format!("between-links:{action}"))
            .output()
            .expect("xtask runs"))
    };

    // An error (a full disk, say) between the renames: undone on the spot.
    with_fault("error", "error").failed(&["SWITCH failed", "injected failure", "rolled back automatically"]);
    assert_eq!(stack.serving(), "good");
    assert!(stack.audit().contains(r#""result":"rolled back automatically""#));
    assert!(!stack.root.join("journal.json").exists());

    // SIGTERM there: the way out puts the links back and stops the candidate; the journal stays.
    let terminated = with_fault("term", "term");
    assert_eq!(terminated.0.status.code(), Some(128 + 15), "{}", terminated.text());
    assert_eq!(stack.serving(), "good");
    assert_eq!(stack.slot_pids().len(), 1, "the candidate was not stopped");
    assert!(stack.run(&["deploy", "status"]).ok().text().contains("interrupted: the next deploy recovers it"));

    // SIGKILL there: nothing runs on the way out, and both links name the release that served.
    let killed = with_fault("kill", "kill");
    assert_eq!(killed.0.status.code(), None, "{}", killed.text());
    assert!(killed.text().contains("recovering: a deploy of term"), "{}", killed.text());
    assert_eq!(links().map(Result::ok), [Some("blue.sock".to_owned()), Some("blue.sock".to_owned())]);
    assert_eq!(stack.serving(), "good");

    let next = stack.deploy("next", &app).ok();
    assert!(next.text().contains("recovering: a deploy of kill (pid"), "{}", next.text());
    assert!(next.text().contains("recovered; serving: good"), "{}", next.text());
    assert_eq!(stack.serving(), "next");
    assert_eq!(stack.slot_pids().len(), 1);
    assert_eq!(stack.audit().matches(r#""result":"recovered""#).count(), 2, "{}", stack.audit());
}

#[test]
fn a_stale_pid_file_naming_another_process_is_never_signalled() {
    let stack = Stack::new("stale");
    let app = app_binary();
    stack.deploy("good", &app).ok();
    // An unrelated process that got a pid the standby slot's file names: as after a reboot.
    let mut bystander = Command::new("sleep").arg("300").spawn().expect("sleep runs");
    let pid = bystander.id();
    std::fs::write(stack.root.join("run/green.pid"), format!("{pid}\n")).expect("write");
    stack.deploy("second", &app).ok();
    // And with a start time that is not the bystander's (the slot that wrote it has exited).
    std::fs::write(stack.root.join("run/blue.pid"), format!("{pid} 1\n")).expect("write");
    stack.deploy("third", &app).ok();
    assert!(bystander.try_wait().expect("wait").is_none(), "the deploy signalled pid {pid}, which was not its slot");
    assert_eq!(stack.serving(), "third");
    let _ = bystander.kill();
    let _ = bystander.wait();
}

#[test]
fn the_service_gets_exactly_deploy_env_not_the_deploying_shell() {
    let stack = Stack::new("env");
    let app = app_binary();
    // Exported in the operator's shell: a stray setting, and a DATABASE_URL_FILE that would clash with
    // deploy.env's DATABASE_URL if the service inherited it.
    let run = Run(stack
        .xtask(&["deploy", "--target", "host", "--release", "clean", "--binary", app.to_str().expect("utf-8")])
        .env("SHIPSHAPE_STRAY", "from-the-shell")
        .env("DATABASE_URL_FILE", "/nonexistent/database_url")
        .output()
        .expect("xtask runs"))
    .ok();
    assert!(run.text().contains("MIGRATE   ok"), "{}", run.text());
    let pid = stack.slot_pids()[0];
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("the slot's environment");
    let names: Vec<String> = environ
        .split(|byte| *byte == 0)
        .filter_map(|entry| String::from_utf8_lossy(entry).split_once('=').map(|(name, _)| name.to_owned()))
        .collect();
    assert!(!names.iter().any(|name| name == "SHIPSHAPE_STRAY" || name == "DATABASE_URL_FILE"), "{names:?}");
    let deploy_env = std::fs::read_to_string(stack.root.join("deploy.env")).expect("read");
    for name in &names {
        let allowed = ["PATH", "LANG", "LC_ALL", "LISTEN_ADDR", "METRICS_ADDR", "APP_RELEASE"].contains(&name.as_str())
            || deploy_env.lines().any(|line| line.starts_with(&format!("{name}=")));
        assert!(allowed, "the slot sees {name}, which deploy.env does not set");
    }
}

#[test]
fn status_checks_the_slots_and_fails_once_the_live_release_is_gone() {
    let stack = Stack::new("status");
    let app = app_binary();
    stack.deploy("good", &app).ok();
    let status = stack.run(&["deploy", "status"]).ok();
    for line in ["blue slot (live): ready, release good", "green slot (standby): not ready", "live: good answers ready"]
    {
        assert!(status.text().contains(line), "missing {line:?} in:\n{}", status.text());
    }
    // The records say one thing, the link another.
    std::os::unix::fs::symlink("green.sock", stack.root.join("run/live.sock.tmp")).expect("link");
    std::fs::rename(stack.root.join("run/live.sock.tmp"), stack.root.join("run/live.sock")).expect("rename");
    let disagree = stack.run(&["deploy", "status"]);
    assert!(
        disagree.text().contains("records and reality disagree: run/live.sock names the green slot"),
        "{}",
        disagree.text()
    );
    std::os::unix::fs::symlink("blue.sock", stack.root.join("run/live.sock.tmp")).expect("link");
    std::fs::rename(stack.root.join("run/live.sock.tmp"), stack.root.join("run/live.sock")).expect("rename");

    let pid = stack.slot_pids()[0];
    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill").success());
    let killed = Instant::now();
    let mut failed = stack.run(&["deploy", "status"]);
    while failed.succeeded() && killed.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
        failed = stack.run(&["deploy", "status"]);
    }
    println!("deploy status failed {:.2} s after the live slot was killed", killed.elapsed().as_secs_f64());
    failed.failed(&["the live release good in the blue slot does not answer /readyz", "cargo xtask rollback"]);
}

#[test]
fn release_ids_that_are_not_names_are_refused_before_anything_runs() {
    let stack = Stack::new("ids");
    let app = app_binary();
    for bad in ["../x", "../releases/good", "a b", "x\nAPP_ENV=development", ".hidden"] {
        let run = stack.deploy(bad, &app);
        assert_eq!(run.0.status.code(), Some(2), "{bad:?}: {}", run.text());
        assert!(run.text().contains("is not a release id"), "{}", run.text());
    }
    assert!(
        !stack.root.join("x").exists()
            && !stack.root.join("releases").exists()
            && !stack.root.join("deploy.lock").exists()
    );
}

#[test]
fn the_slots_logs_rotate_with_the_shipped_logrotate_snippet_while_the_slot_keeps_writing() {
    let stack = Stack::new("logs");
    stack.deploy("good", &app_binary()).ok();
    let log = stack.root.join("logs/blue.log");
    let before = std::fs::read_to_string(&log).expect("the slot's log");
    assert!(!before.is_empty());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_owned();
    let snippet = std::fs::read_to_string(repo.join("deploy/logrotate/shipshape")).expect("the logrotate snippet");
    assert!(snippet.contains("/srv/shipshape/logs/"), "{snippet}");
    let conf = stack.root.join("logrotate.conf");
    std::fs::write(&conf, snippet.replace("/srv/shipshape/logs/", &format!("{}/logs/", stack.root()))).expect("write");
    let rotated = program("logrotate")
        .arg("--force")
        .arg("--state")
        .arg(stack.root.join("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("logrotate runs (apt-get install logrotate)");
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let old = std::fs::read_to_string(stack.root.join("logs/blue.log.1")).expect("the rotated log");
    assert!(old.starts_with(&before), "the rotated file lost lines");
    // The slot still writes, to the start of the truncated file (it appends), with no hole before it.
    for _ in 0..5 {
        assert_eq!(stack.serving(), "good");
    }
    let now = std::fs::read(&log).expect("the log");
    assert!(!now.is_empty() && now.len() < old.len() + 4096, "{} bytes after the rotation", now.len());
    assert!(!now.contains(&0), "the log has a hole of zero bytes: the slot does not append");
}

/// A real sshd on loopback, with its own host key, client key and an ssh configuration naming it
/// `shipshape-test`, `shipshape-bare` (no key or known host: those come from the environment) and
/// `shipshape-unreachable` (a port nothing listens on). Stopped when dropped.
struct Sshd {
    process: Child,
    client_config: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Sshd {
    fn start(dir: &Path) -> Self {
        let dir = dir.join("ssh");
        std::fs::create_dir_all(&dir).expect("mkdir");
        for key in ["host_key", "id"] {
            let status = program("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(key))
                .status()
                .expect("ssh-keygen runs");
            assert!(status.success());
        }
        std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).expect("copy");
        let (port, d) = (free_port(), dir.display());
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 Subsystem sftp internal-sftp\nAcceptEnv LLVM_PROFILE_FILE\nLogLevel ERROR\n"
            ),
        )
        .expect("write");
        let user = String::from_utf8(Command::new("id").arg("-un").output().expect("id runs").stdout).expect("utf-8");
        let client_config = dir.join("ssh_config");
        std::fs::write(
            &client_config,
            format!(
                "Host shipshape-test\n  HostName 127.0.0.1\n  Port {port}\n  User {}\n  IdentityFile {d}/id\n  IdentitiesOnly yes\n\
                 UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n  LogLevel ERROR\n  SendEnv LLVM_PROFILE_FILE\n\
                 Host shipshape-bare\n  HostName 127.0.0.1\n  Port {port}\n  User {}\n  SendEnv LLVM_PROFILE_FILE\n\
                 Host shipshape-unreachable\n  HostName 127.0.0.1\n  Port {}\n  ConnectTimeout 5\n",
                user.trim(),
                user.trim(),
                free_port()
            ),
        )
        .expect("write");
        // sshd wants its privilege-separation directory, and an absolute path to re-execute itself
        // (which `program` gives).
        let _ = std::fs::create_dir_all("/run/sshd");
        let process = program("sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .spawn()
            .expect("sshd starts");
        await_listening(port, Duration::from_secs(10), || "sshd did not start listening".to_owned());
        Self { process, client_config, dir, port }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[test]
fn a_deploy_over_ssh_runs_the_same_machine_on_the_remote_host() {
    let stack = Stack::new("ssh");
    let sshd = Sshd::start(&stack.root);
    let over_ssh = |destination: &str, args: &[&str]| {
        Run(stack
            .xtask(args)
            .args(["--ssh", destination])
            .env("DEPLOY_SSH_CONFIG", &sshd.client_config)
            .output()
            .expect("xtask runs"))
    };
    let app = app_binary();
    let deploy = |release: &str| {
        over_ssh(
            "shipshape-test",
            &["deploy", "--target", "host", "--release", release, "--binary", app.to_str().expect("utf-8")],
        )
    };
    // As in Actions: who, what and which run, passed to the remote xtask as arguments.
    let first = Run(stack
        .xtask(&["deploy", "--target", "host", "--release", "s1", "--binary", app.to_str().expect("utf-8")])
        .args(["--ssh", "shipshape-test"])
        .env("DEPLOY_SSH_CONFIG", &sshd.client_config)
        .env("GITHUB_ACTOR", "octocat")
        .env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "acme/shipshape")
        .env("GITHUB_RUN_ID", "42")
        .output()
        .expect("xtask runs"))
    .ok();
    let record: serde_json::Value =
        serde_json::from_str(stack.audit().lines().last().expect("a record")).expect("JSON");
    assert_eq!(
        (&record["who"], &record["commit"], &record["run_url"], &record["result"]),
        (
            &"octocat".into(),
            &"0123456789abcdef0123456789abcdef01234567".into(),
            &"https://github.com/acme/shipshape/actions/runs/42".into(),
            &"deployed".into()
        )
    );
    assert_every_state(&first);
    assert!(first.text().contains("is on shipshape-test as"), "{}", first.text());
    assert_eq!(stack.serving(), "s1");
    deploy("s2").ok();
    assert_eq!(stack.serving(), "s2");
    let status = over_ssh("shipshape-test", &["deploy", "status"]).ok();
    assert!(status.text().contains("serving: s2 in the green slot (previous: s1)"), "{}", status.text());
    over_ssh("shipshape-test", &["rollback"]).ok();
    assert_eq!(stack.serving(), "s1");

    // The remote side: the xtask kept for status and rollback, each release staged, no upload left.
    assert!(stack.root.join("bin/xtask").is_file());
    assert!(stack.root.join("releases/s2/app").is_file());
    assert_eq!(std::fs::read_dir(stack.root.join("incoming")).map(Iterator::count).unwrap_or(0), 0);

    // As in CI: the key (a secret) and the host's public key in the environment, written to private
    // files for the run and removed after it.
    let key = std::fs::read_to_string(sshd.dir.join("id")).expect("the client key");
    let host_key = std::fs::read_to_string(sshd.dir.join("host_key.pub")).expect("the host key");
    let known_hosts = format!("[127.0.0.1]:{} {}", sshd.port, host_key.trim());
    let from_env = Run(stack
        .xtask(&["deploy", "status", "--ssh", "shipshape-bare"])
        .env("DEPLOY_SSH_CONFIG", &sshd.client_config)
        .env("DEPLOY_SSH_KEY", key.trim_end())
        .env("DEPLOY_SSH_KNOWN_HOSTS", &known_hosts)
        .output()
        .expect("xtask runs"))
    .ok();
    assert!(from_env.text().contains("serving: s1"), "{}", from_env.text());
    assert!(!from_env.text().contains(key.trim()), "the key was printed");
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("shipshape-ssh-"))
        .collect();
    assert!(left.is_empty(), "key files left behind: {left:?}");

    over_ssh("shipshape-unreachable", &["deploy", "status"])
        .failed(&["ssh could not reach shipshape-unreachable", "DEPLOY_SSH_CONFIG"]);
}

#[test]
fn a_root_with_spaces_and_shell_metacharacters_reaches_the_remote_host_intact() {
    let stack = Stack::new("odd");
    let sshd = Sshd::start(&stack.root);
    // Short, so the slots' socket paths still fit in sockaddr_un on a CI runner's longer paths.
    let root = stack.root.join("a b'$`;&");
    std::fs::create_dir_all(&root).expect("mkdir");
    let _slots = StopSlots(root.clone());
    std::fs::copy(stack.root.join("deploy.env"), root.join("deploy.env")).expect("copy");
    let root_arg = root.to_str().expect("utf-8");
    let app = app_binary();
    let over_ssh = |args: &[&str]| {
        Run(Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .args(["--root", root_arg, "--ssh", "shipshape-test"])
            .env("DEPLOY_SSH_CONFIG", &sshd.client_config)
            .env_remove("DEPLOY_TARGET")
            .env_remove("DEPLOY_ROOT")
            .output()
            .expect("xtask runs"))
    };
    let binary = app.to_str().expect("utf-8");
    over_ssh(&["deploy", "--target", "host", "--release", "q1", "--binary", binary]).ok();
    over_ssh(&["deploy", "--target", "host", "--release", "q2", "--binary", binary]).ok();
    let status = over_ssh(&["deploy", "status"]).ok();
    assert!(status.text().contains("live: q2 answers ready in the green slot"), "{}", status.text());
    over_ssh(&["rollback"]).ok();
    assert!(over_ssh(&["deploy", "status"]).ok().text().contains("live: q1 answers ready in the blue slot"));
    assert!(root.join("releases/q2/app").is_file() && root.join("bin/xtask").is_file());
    // Nothing landed beside the root, as a path split at a space or a `;` would have made.
    let mut beside: Vec<String> = std::fs::read_dir(&stack.root)
        .expect("read")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(beside, ["a b'$`;&", "deploy.env", "nginx", "ssh"]);
}

#[test]
fn slots_run_as_instances_of_the_systemd_unit_when_configured() {
    let stack = Stack::new("systemd");
    let env = std::fs::read_to_string(stack.root.join("deploy.env")).expect("read");
    std::fs::write(stack.root.join("deploy.env"), format!("{env}DEPLOY_SYSTEMD_UNIT=shipshape@\n")).expect("write");
    let path = fakes_first_on_path();
    let app = app_binary();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_owned();
    let deploy = |release: &str| {
        Run(stack
            .xtask(&["deploy", "--target", "host", "--release", release, "--binary", app.to_str().expect("utf-8")])
            .env("PATH", &path)
            .env("FAKE_DIR", &stack.root)
            // Not root, the deploy reaches systemctl through sudo, as the shipped sudoers file allows.
            .env("SUDOERS", repo.join("deploy/sudo/shipshape"))
            .output()
            .expect("xtask runs"))
    };
    deploy("u1").ok();
    assert_eq!(stack.serving(), "u1");
    deploy("u2").ok();
    assert_eq!(stack.serving(), "u2");

    let calls = std::fs::read_to_string(stack.root.join("calls.log")).expect("systemctl was called");
    let calls: Vec<&str> =
        calls.lines().filter(|line| line.starts_with("systemctl ") && !line.contains(" show ")).collect();
    assert_eq!(
        calls,
        [
            // u1 into blue (first the candidate slot is stopped, whatever ran there).
            "systemctl disable --quiet shipshape@blue.service",
            "systemctl stop shipshape@blue.service",
            "systemctl enable --quiet shipshape@blue.service",
            "systemctl restart shipshape@blue.service",
            // u2 into green, then blue drained: only the serving instance stays enabled.
            "systemctl disable --quiet shipshape@green.service",
            "systemctl stop shipshape@green.service",
            "systemctl enable --quiet shipshape@green.service",
            "systemctl restart shipshape@green.service",
            "systemctl disable --quiet shipshape@blue.service",
            "systemctl stop shipshape@blue.service",
        ]
    );
    let link = std::fs::read_link(stack.root.join("slots/green")).expect("slots/green is a link");
    assert_eq!(link, Path::new("../releases/u2"));
    let slot_env = std::fs::read_to_string(stack.root.join("slots/green.env")).expect("slots/green.env");
    assert!(slot_env.contains("APP_RELEASE=u2\n") && slot_env.contains("/run/green.sock\n"), "{slot_env}");
    // Stack::drop stops what runs in a slot by its pid file; the fake kept its own as well.
    let pid = std::fs::read_to_string(stack.root.join("systemd-green.pid")).expect("green runs");
    assert_eq!(stack.slot_pids(), [pid.trim().parse::<u32>().expect("a pid")]);
}

/// The unprivileged user the non-root deploy runs as, created when missing (we are root); `None` when
/// we are not root and cannot create one.
fn deploy_user() -> Option<(u32, u32)> {
    const USER: &str = "shipshape-deployer";
    let id = |flag: &str| {
        let output = Command::new("id").args([flag, USER]).output().ok()?;
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let created = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER])
            .status()
            .is_ok_and(|status| status.success());
        if !created {
            return None;
        }
    }
    Some((id("-u")?, id("-g")?))
}

#[test]
fn a_deploy_user_without_privileges_deploys_through_sudo_for_the_units_only() {
    if !support::is_root() {
        println!("skipped: creating the unprivileged deploy user needs root, and this test runs as another user");
        return;
    }
    let (uid, gid) = deploy_user().expect("useradd creates the deploy user");
    let stack = Stack::new("nonroot");
    let env = std::fs::read_to_string(stack.root.join("deploy.env")).expect("read");
    std::fs::write(stack.root.join("deploy.env"), format!("{env}DEPLOY_SYSTEMD_UNIT=shipshape@\n")).expect("write");
    // The deploy user owns the deploy root, as the runbook installs it.
    assert!(
        Command::new("chown").args(["-R", &format!("{uid}:{gid}")]).arg(&stack.root).status().expect("chown").success()
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_owned();
    let path = fakes_first_on_path();
    let app = app_binary();
    let deploy = |release: &str| {
        let mut command = stack.xtask(&[
            "deploy",
            "--target",
            "host",
            "--release",
            release,
            "--binary",
            app.to_str().expect("utf-8"),
        ]);
        std::os::unix::process::CommandExt::uid(&mut command, uid);
        std::os::unix::process::CommandExt::gid(&mut command, gid);
        Run(command
            .env("PATH", &path)
            .env("FAKE_DIR", &stack.root)
            .env("SUDOERS", repo.join("deploy/sudo/shipshape"))
            .env("USER", "shipshape-deployer")
            // Coverage data goes to root's directory, which this user cannot write.
            .env_remove("LLVM_PROFILE_FILE")
            .output()
            .expect("xtask runs"))
    };
    let first = deploy("n1").ok();
    assert_every_state(&first);
    assert_eq!(stack.serving(), "n1");
    deploy("n2").ok();
    assert_eq!(stack.serving(), "n2");

    let calls = std::fs::read_to_string(stack.root.join("calls.log")).expect("sudo was called");
    let privileged: Vec<&str> = calls.lines().filter(|line| line.starts_with("sudo ")).collect();
    assert_eq!(
        privileged,
        [
            "sudo -n systemctl disable --quiet shipshape@blue.service",
            "sudo -n systemctl stop shipshape@blue.service",
            "sudo -n systemctl enable --quiet shipshape@blue.service",
            "sudo -n systemctl restart shipshape@blue.service",
            "sudo -n systemctl disable --quiet shipshape@green.service",
            "sudo -n systemctl stop shipshape@green.service",
            "sudo -n systemctl enable --quiet shipshape@green.service",
            "sudo -n systemctl restart shipshape@green.service",
            "sudo -n systemctl disable --quiet shipshape@blue.service",
            "sudo -n systemctl stop shipshape@blue.service",
        ]
    );
    // Everything the deploy wrote is the deploy user's.
    for written in ["state.json", "audit.log", "releases/n2/app", "slots/green.env", "run/green.pid"] {
        let owner = std::fs::metadata(stack.root.join(written)).map(|meta| std::os::unix::fs::MetadataExt::uid(&meta));
        assert_eq!(owner.ok(), Some(uid), "{written} is not the deploy user's");
    }
    let audit = stack.audit();
    assert!(audit.contains(r#""who":"shipshape-deployer""#), "{audit}");
}

#[test]
fn rollbacks_across_a_migration_under_load_fail_no_request_and_lose_no_write() {
    let stack = Stack::new("migrated");
    let app = app_binary();
    stack.deploy("r1", &app).ok();
    let auth = api_token(stack.port);
    let stop = Arc::new(AtomicBool::new(false));
    let (fresh, kept, threads) = load(stack.port, &auth, &stop);
    std::thread::sleep(Duration::from_millis(500));

    // r2 migrates while r1 serves; `cargo xtask rollback` puts r1 back, on r2's schema.
    let r2 = release_with_a_migration(&stack.root, "r2-migrates", 29_990_101_000_000, "pinned", "");
    let deployed = stack.deploy("r2", &r2).ok();
    for line in ["backed up to", "the backup restores:", "MIGRATE   ok"] {
        assert!(deployed.text().contains(line), "missing {line:?} in:\n{}", deployed.text());
    }
    assert_eq!(stack.serving(), "r2");
    stack.run(&["rollback"]).ok();
    assert_eq!(stack.serving(), "r1");

    // A release with a migration that fails VERIFY: its migration stays, r1 keeps serving on it.
    let stops = release_with_a_migration(
        &stack.root,
        "r3-stops",
        29_990_201_000_000,
        "archived",
        &format!(
            "{} serve & child=$!\n  trap 'kill $child; wait $child; exit 1' TERM\n  until grep -q '\"r3\"' {}/state.json; do sleep 0.05; done\n  kill -TERM $child\n  wait $child\n  exit 1",
            app.display(),
            stack.root()
        ),
    );
    stack.deploy("r3", &stops).failed(&["MIGRATE   ok", "VERIFY failed", "rolled back automatically"]);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().expect("load thread");
    }
    assert_eq!(stack.serving(), "r1");
    let schema = psql(
        &stack.database_url(),
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'notes' AND column_name IN ('pinned', 'archived') \
         UNION ALL SELECT count(*) FROM _sqlx_migrations WHERE version > 29990000000000",
    );
    assert_eq!(schema, "2\n2", "r1 serves on the schema of both newer releases");

    let (ok, unexpected, errors) = fresh.get();
    let (kept_ok, kept_unexpected, kept_errors) = kept.get();
    println!(
        "load across rollbacks over a migration: fresh connections {ok} ok, {unexpected} unexpected, {errors} errors; keep-alive {kept_ok} ok, {kept_unexpected} unexpected, {kept_errors} errors"
    );
    assert!(ok > 100 && kept_ok > 100, "too little load to prove anything");
    assert_eq!((unexpected, errors, kept_unexpected, kept_errors), (0, 0, 0, 0), "requests failed");
    let created = fresh.created.load(Ordering::SeqCst) + kept.created.load(Ordering::SeqCst);
    let rows: u64 = psql(&stack.database_url(), "SELECT count(*) FROM notes").parse().expect("a count");
    println!("notes: {created} POSTs answered 201, {rows} rows");
    assert!(created > 50, "too few POSTs to prove anything");
    assert_eq!(rows, created, "every note answered 201 is stored, and only those");
}

#[test]
fn a_backup_that_does_not_restore_stops_the_deploy_before_any_schema_change() {
    let stack = Stack::new("unrestorable");
    stack.deploy("r1", &app_binary()).ok();
    // A classic: a CHECK calling a function that names a table without its schema. pg_restore runs
    // with an empty search_path, so the dump does not load, while the live database works.
    psql(
        &stack.database_url(),
        "CREATE TABLE banned (n int);
         CREATE FUNCTION allowed(value int) RETURNS boolean LANGUAGE sql AS 'SELECT NOT EXISTS (SELECT 1 FROM banned WHERE n = value)';
         CREATE TABLE guarded (n int CHECK (allowed(n)));
         INSERT INTO guarded VALUES (1)",
    );
    let r2 = release_with_a_migration(&stack.root, "r2-migrates", 29_990_101_000_000, "pinned", "");
    stack.deploy("r2", &r2).failed(&["BACKUP    FAILED", "does not restore", "relation \"banned\" does not exist"]);
    assert_eq!(stack.serving(), "r1");
    let migrated = psql(
        &stack.database_url(),
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'notes' AND column_name = 'pinned'",
    );
    assert_eq!(migrated, "0", "the schema changed although the backup does not restore");
    let leftovers = psql(&stack.server, "SELECT count(*) FROM pg_database WHERE datname LIKE 'deploy_verify_backup_%'");
    assert_eq!(leftovers, "0", "the scratch database was left behind");

    // Above DEPLOY_VERIFY_BACKUP_MAX the proof is skipped, and said so.
    let env = std::fs::read_to_string(stack.root.join("deploy.env")).expect("read");
    std::fs::write(stack.root.join("deploy.env"), format!("{env}DEPLOY_VERIFY_BACKUP_MAX=0\n")).expect("write");
    let run = stack.deploy("r2", &r2).ok();
    assert!(run.text().contains("is over DEPLOY_VERIFY_BACKUP_MAX (0 bytes)"), "{}", run.text());
    assert_eq!(stack.serving(), "r2");
}
