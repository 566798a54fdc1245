//! The service talks TLS to PostgreSQL and Redis: a throwaway PostgreSQL (`xtask postgres`) switched to
//! `ssl=on` with a certificate from a CA made here, reached by `app migrate` with `sslmode=verify-full`;
//! and a redis-server with only a TLS port, reached by `app serve` through `rediss://`. A CA that did
//! not sign the server's certificate fails both.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{app_binary, await_listening, free_port, psql};

/// `ca.pem` and `other-ca.pem`, and `server.pem`/`server.key`, signed by `ca.pem` for localhost and
/// 127.0.0.1, in `dir`.
fn certificates(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for ca in ["ca", "other-ca"] {
        let subject = format!("/CN=shipshape test {ca}");
        let (keyout, out) = (format!("{ca}.key"), format!("{ca}.pem"));
        openssl(
            &[
                &["req", "-x509", "-days", "2", "-subj", &subject, "-keyout", &keyout, "-out", &out][..],
                &key,
                &["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
    }
    openssl(&[&["req", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"][..], &key].concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

/// `xtask postgres`, running until dropped: its DATABASE_URL and data directory.
struct Postgres {
    child: Child,
    url: String,
    data: PathBuf,
    _stdout: BufReader<ChildStdout>,
}

impl Postgres {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("postgres")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .spawn()
            .expect("xtask starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (mut url, mut data, mut line) = (None, None, String::new());
        while data.is_none() && stdout.read_line(&mut line).expect("stdout") > 0 {
            if let Some(value) = line.trim().strip_prefix("DATABASE_URL=") {
                url = Some(value.to_owned());
            }
            if let Some(value) = line.trim().strip_prefix("PGDATA=") {
                data = Some(PathBuf::from(value));
            }
            line.clear();
        }
        Self { child, url: url.expect("DATABASE_URL"), data: data.expect("PGDATA"), _stdout: stdout }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: the xtask stops the server and removes its directory.
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// `app ARGS` in development mode with `env` and nothing else.
fn app(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut app = Command::new(app_binary());
    app.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APP_ENV", "development")
        .envs(env.iter().copied());
    app
}

#[test]
fn the_service_reaches_postgresql_over_verified_tls() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("postgres-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    certificates(&dir);
    let postgres = Postgres::start();
    // The server's certificate and key in its data directory, owned by the server's user.
    for file in ["server.pem", "server.key"] {
        std::fs::copy(dir.join(file), postgres.data.join(file)).expect("copy");
    }
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&postgres.data).expect("PGDATA"));
    let owned = Command::new("chown")
        .arg(owner.to_string())
        .arg(postgres.data.join("server.pem"))
        .arg(postgres.data.join("server.key"))
        .status();
    assert!(owned.expect("chown runs").success());
    let private = Command::new("chmod").arg("0600").arg(postgres.data.join("server.key")).status();
    assert!(private.expect("chmod runs").success());
    for setting in ["ssl_cert_file = 'server.pem'", "ssl_key_file = 'server.key'", "ssl = on"] {
        psql(&postgres.url, &format!("ALTER SYSTEM SET {setting}"));
    }
    psql(&postgres.url, "SELECT pg_reload_conf()");

    let (base, database) = postgres.url.rsplit_once('/').expect("a database");
    let port = base.rsplit_once(':').expect("a port").1;
    let over_tls = |mode: &str, ca: &str| {
        let url = format!(
            "postgres://postgres@localhost:{port}/{database}?sslmode={mode}&sslrootcert={}",
            dir.join(ca).display()
        );
        app(&["migrate"], &[("DATABASE_URL", &url)]).output().expect("app runs")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut verified = over_tls("verify-full", "ca.pem");
    while !verified.status.success() && Instant::now() < deadline {
        // pg_reload_conf() only asks: the server loads the certificate a moment later.
        std::thread::sleep(Duration::from_millis(200));
        verified = over_tls("verify-full", "ca.pem");
    }
    assert!(verified.status.success(), "verify-full: {}", String::from_utf8_lossy(&verified.stderr));
    let tables = psql(&postgres.url, "SELECT count(*) FROM _sqlx_migrations");
    assert!(tables.parse::<u32>().expect("a count") > 0, "the migrations ran over TLS");
    let required = over_tls("require", "ca.pem");
    assert!(required.status.success(), "require: {}", String::from_utf8_lossy(&required.stderr));
    let foreign = over_tls("verify-full", "other-ca.pem");
    assert!(!foreign.status.success(), "a certificate from another CA was accepted");
    let _ = std::fs::remove_dir_all(&dir);
}

/// redis-server with only a TLS port, until dropped.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(dir.join("server.pem"))
            .arg("--tls-key-file")
            .arg(dir.join("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(dir.join("ca.pem"))
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts (apt-get install redis-server)");
        await_listening(port, Duration::from_secs(10), || format!("redis-server did not listen on {port}"));
        Self { child, port }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `app serve` with `REDIS_URL`, the CA the system trusts given by `SSL_CERT_FILE`: the status of a
/// failed login, which goes through the Redis rate limit (fail closed) before the password check.
fn login_status(redis: &TlsRedis, ca: &Path) -> u16 {
    let (port, database) =
        (free_port(), std::env::var("DATABASE_URL").expect("set DATABASE_URL (cargo xtask test does)"));
    let redis_url = format!("rediss://localhost:{}/0", redis.port);
    let (listen, metrics) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{}", free_port()));
    let env = [
        ("DATABASE_URL", database.as_str()),
        ("REDIS_URL", &redis_url),
        ("SSL_CERT_FILE", ca.to_str().expect("utf-8")),
        ("LISTEN_ADDR", &listen),
        ("METRICS_ADDR", &metrics),
        ("ALLOWED_HOSTS", "localhost"),
    ];
    let mut serve =
        app(&["serve"], &env).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("app serve starts");
    await_listening(port, Duration::from_secs(20), || "app serve did not listen".to_owned());
    let body = r#"{"email":"nobody@example.com","password":"not the password 1"}"#;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let request = format!(
        "POST /api/v1/session HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let _ = serve.kill();
    let _ = serve.wait();
    response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

#[test]
fn the_rate_limit_reaches_redis_over_verified_tls() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    certificates(&dir);
    let redis = TlsRedis::start(&dir);
    assert_eq!(login_status(&redis, &dir.join("ca.pem")), 401, "the limiter did not answer over rediss://");
    let keys = Command::new("redis-cli")
        .args(["--tls", "-p", &redis.port.to_string(), "-h", "localhost", "--cacert"])
        .arg(dir.join("ca.pem"))
        .args(["--scan"])
        .output()
        .expect("redis-cli runs");
    assert!(!String::from_utf8_lossy(&keys.stdout).trim().is_empty(), "the limiter wrote no counter to Redis");
    // Redis is the same, the CA is not the one that signed it: the limiter fails closed.
    assert_ne!(login_status(&redis, &dir.join("other-ca.pem")), 401, "a certificate from another CA was accepted");
    let _ = std::fs::remove_dir_all(&dir);
}
