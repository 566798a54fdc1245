//! `xtask deploy --target host` on a real stack: nginx and PostgreSQL on loopback, the service in two
//! slots. A deploy under load fails no request; a release that never gets healthy, or crashes after the
//! switch, leaves the old one serving; a killed deploy is recovered; two deploys never run at once.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::{Run, app_binary, free_port, psql};

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
        let (port, blue, green) = (free_port(), free_port(), free_port());
        let upstream = conf.join("upstream.conf");
        std::fs::write(
            &upstream,
            format!(
                "upstream shipshape_app {{ server 127.0.0.1:{blue}; server 127.0.0.1:{green} backup; keepalive 32; }}\n"
            ),
        )
        .expect("write");
        let c = conf.display();
        std::fs::write(
            conf.join("nginx.conf"),
            format!(
                "daemon off;\nworker_processes 2;\npid {c}/nginx.pid;\nerror_log {c}/error.log;\nevents {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {c}/tmp/body; proxy_temp_path {c}/tmp/proxy; fastcgi_temp_path {c}/tmp/fastcgi; uwsgi_temp_path {c}/tmp/uwsgi; scgi_temp_path {c}/tmp/scgi;\n\
                 include {c}/upstream.conf;\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://shipshape_app;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host app.test;\n      proxy_set_header X-Forwarded-Proto https;\n      proxy_next_upstream error timeout;\n    }}\n  }}\n}}\n"
            ),
        )
        .expect("write");
        let nginx = Command::new("nginx")
            .args(["-p", &c.to_string(), "-c", &format!("{c}/nginx.conf")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts (apt-get install nginx)");
        let server = std::env::var("DATABASE_URL").expect("set DATABASE_URL (cargo xtask test does)");
        let database = format!("xtask_deploy_{name}_{}", std::process::id());
        psql(&server, &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
        psql(&server, &format!("CREATE DATABASE {database}"));
        let (base, _) = server.rsplit_once('/').expect("a database name");
        let env = format!(
            "APP_ENV=production\nDATABASE_URL={base}/{database}\nSECRET_KEY=deploy-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz\n\
             ALLOWED_HOSTS=app.test\nTRUSTED_PROXIES=127.0.0.1/32\nSILENCED_CHECKS=security.W021\nDRAIN_DELAY=1s\nSHUTDOWN_TIMEOUT=5s\nCSP_REPORTS_PER_MINUTE=1000000\nLOG_FORMAT=json\n\
             DEPLOY_BLUE_ADDR=127.0.0.1:{blue}\nDEPLOY_GREEN_ADDR=127.0.0.1:{green}\n\
             DEPLOY_BLUE_METRICS_ADDR=127.0.0.1:{}\nDEPLOY_GREEN_METRICS_ADDR=127.0.0.1:{}\n\
             DEPLOY_UPSTREAM_FILE={c}/upstream.conf\nDEPLOY_NGINX_RELOAD=nginx -p {c} -c {c}/nginx.conf -s reload\nDEPLOY_NGINX_PID_FILE={c}/nginx.pid\n\
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
                std::fs::read_to_string(self.root.join(format!("run/{slot}.pid"))).ok()?.trim().parse().ok()
            })
            .collect()
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.root.join("audit.log")).unwrap_or_default()
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
}

impl Tally {
    fn get(&self) -> (u64, u64, u64) {
        (self.ok.load(Ordering::SeqCst), self.unexpected.load(Ordering::SeqCst), self.errors.load(Ordering::SeqCst))
    }
}

/// Reads one response from a keep-alive connection: its status (bodies have a Content-Length).
fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
    }
    let status = line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(status)
}

const REPORT: &str = r#"{"csp-report":{"document-uri":"https://app.test/","violated-directive":"script-src"}}"#;

fn request(method: &str, keep_alive: bool) -> String {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    if method == "POST" {
        format!(
            "POST /csp-report HTTP/1.1\r\nHost: app.test\r\nConnection: {connection}\r\nContent-Type: application/csp-report\r\nContent-Length: {}\r\n\r\n{REPORT}",
            REPORT.len()
        )
    } else {
        format!("GET /healthz HTTP/1.1\r\nHost: app.test\r\nConnection: {connection}\r\n\r\n")
    }
}

/// Clients with no retries: fresh connections (GET and POST) and keep-alive connections, until `stop`.
fn load(port: u16, stop: &Arc<AtomicBool>) -> (Arc<Tally>, Arc<Tally>, Vec<std::thread::JoinHandle<()>>) {
    let (fresh, kept) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let mut threads = Vec::new();
    for worker in 0..4 {
        let (stop, tally) = (Arc::clone(stop), Arc::clone(&fresh));
        threads.push(std::thread::spawn(move || {
            let mut n = 0_u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let method = if (n + worker).is_multiple_of(2) { "POST" } else { "GET" };
                let outcome = TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
                    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                    stream.write_all(request(method, false).as_bytes())?;
                    read_response(&mut BufReader::new(stream))
                });
                count(&tally, &outcome);
            }
        }));
    }
    for _ in 0..2 {
        let (stop, tally) = (Arc::clone(stop), Arc::clone(&kept));
        threads.push(std::thread::spawn(move || {
            let mut connection: Option<(TcpStream, BufReader<TcpStream>)> = None;
            let mut n = 0_u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let method = if n.is_multiple_of(2) { "POST" } else { "GET" };
                if connection.is_none() {
                    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                    let reader = BufReader::new(stream.try_clone().expect("clone"));
                    connection = Some((stream, reader));
                }
                let (stream, reader) = connection.as_mut().expect("connected");
                let outcome = stream.write_all(request(method, true).as_bytes()).and_then(|()| read_response(reader));
                if outcome.is_err() {
                    connection = None;
                }
                count(&tally, &outcome);
            }
        }));
    }
    (fresh, kept, threads)
}

fn count(tally: &Tally, outcome: &std::io::Result<u16>) {
    match outcome {
        Ok(200 | 204) => tally.ok.fetch_add(1, Ordering::SeqCst),
        Ok(_) => tally.unexpected.fetch_add(1, Ordering::SeqCst),
        Err(_) => tally.errors.fetch_add(1, Ordering::SeqCst),
    };
}

#[test]
fn a_deploy_under_load_fails_no_request_and_a_rollback_brings_the_previous_release_back() {
    let stack = Stack::new("load");
    let app = app_binary();
    let first = stack.deploy("r1", &app).ok();
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
        assert!(first.text().lines().any(|line| line.contains(state)), "no line for {state}:\n{}", first.text());
    }
    assert!(first.text().contains("backed up to"), "the first deploy has migrations pending: {}", first.text());
    assert_eq!(stack.serving(), "r1");

    let stop = Arc::new(AtomicBool::new(false));
    let (fresh, kept, threads) = load(stack.port, &stop);
    std::thread::sleep(Duration::from_millis(500));
    let second = stack.deploy("r2", &app).ok();
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
        "load across the deploy: fresh connections {ok} ok, {unexpected} unexpected, {errors} errors; keep-alive {kept_ok} ok, {kept_unexpected} unexpected, {kept_errors} errors"
    );
    assert!(ok > 100 && kept_ok > 100, "too little load to prove anything");
    assert_eq!((unexpected, errors), (0, 0), "fresh connections failed across the deploy");
    assert_eq!(kept_unexpected, 0, "keep-alive clients got unexpected statuses");
    // What reloads do to idle keep-alive client connections (REFERENCES §5): counted, at most a few.
    assert!(kept_errors <= 4, "{kept_errors} keep-alive connections reset");

    let status = stack.run(&["deploy", "status"]).ok();
    assert!(status.text().contains("serving: r2 in the green slot (previous: r1)"), "{}", status.text());
    stack.run(&["rollback"]).ok();
    assert_eq!(stack.serving(), "r1");
    assert!(stack.run(&["deploy", "status"]).ok().text().contains("serving: r1 in the blue slot (previous: r2)"));
    let audit = stack.audit();
    assert_eq!(audit.lines().filter(|line| line.contains(r#""result":"deployed""#)).count(), 3, "{audit}");
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
