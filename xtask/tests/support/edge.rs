//! The production edge for the process tests: real nginx running deploy/nginx/ in front of the real
//! service in production mode.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{app_binary, await_listening, free_port, program};

/// `app serve` in production on `listen`, until `listening` says so.
pub(crate) fn serve(listen: &str, extra: &[(&str, &str)], listening: impl Fn() -> bool) -> Child {
    let child = Command::new(app_binary())
        .arg("serve")
        .env("APP_ENV", "production")
        .env("DATABASE_URL", std::env::var("DATABASE_URL").expect("set DATABASE_URL (cargo xtask test does)"))
        .env("SECRET_KEY", "smoke-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
        .env("ALLOWED_HOSTS", "app.test")
        // Clients connect directly unless a test puts a proxy in front (and sets TRUSTED_PROXIES).
        .env("SILENCED_CHECKS", "security.W021,proxy.W001")
        .env("LISTEN_ADDR", listen)
        .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("DRAIN_DELAY", "0s")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("app starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !listening() {
        assert!(Instant::now() < deadline, "the service did not listen on {listen}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// The production edge: real nginx running the files of deploy/nginx/ (TLS, the 308, HSTS, the default
/// servers for unknown names), a self-signed certificate for app.test, and the service behind it on the
/// unix socket upstream.conf connects to. Only what a host has elsewhere is changed: addresses and paths.
pub(crate) struct Edge {
    pub(crate) dir: PathBuf,
    nginx: Child,
    service: Child,
    pub(crate) http: u16,
    pub(crate) https: u16,
}

/// `text` with `from` replaced, which must be there: a changed artefact fails here, not quietly.
pub(crate) fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is no longer in the artefact");
    text.replace(from, to)
}

impl Edge {
    pub(crate) fn start() -> Self {
        Self::start_with("app.test", |conf| conf)
    }

    /// The edge for `host`, with shipshape.conf changed by `edit` (the mistakes the checks must catch).
    pub(crate) fn start_with(host: &str, edit: impl Fn(String) -> String) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("edge-{}-{host}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (conf, (http, https)) = (dir.join("conf"), (free_port(), free_port()));
        for sub in ["conf/shipshape/snippets", "conf/tls", "run", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        let artefacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx");
        let d = dir.display();
        for name in [
            "shipshape.conf",
            "upstream.conf",
            "snippets/tls.conf",
            "snippets/proxy.conf",
            "snippets/errors.conf",
            "snippets/error-headers.conf",
            "snippets/server-name.conf",
        ] {
            let mut text = std::fs::read_to_string(artefacts.join(name)).expect("an nginx artefact");
            text = match name {
                "shipshape.conf" => {
                    let text = substitute(&text, "listen 80", &format!("listen 127.0.0.1:{http}"));
                    let text = substitute(&text, "listen 443", &format!("listen 127.0.0.1:{https}"));
                    let text = substitute(&text, "/var/log/nginx/", &format!("{d}/"));
                    let text = substitute(&text, "/srv/shipshape/acme", &format!("{d}/acme"));
                    edit(text.lines().filter(|line| !line.contains("listen [::]")).collect::<Vec<_>>().join("\n"))
                }
                "upstream.conf" => substitute(&text, "/srv/shipshape/run/", &format!("{d}/run/")),
                "snippets/server-name.conf" => substitute(&text, "shipshape.example.com", host),
                _ => text,
            };
            std::fs::write(conf.join("shipshape").join(name), text).expect("write");
        }
        // What the distribution's nginx.conf provides around `include shipshape/shipshape.conf`.
        std::fs::write(
            conf.join("nginx.conf"),
            format!(
                "daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 256; }}\n\
                 http {{\n  client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy; fastcgi_temp_path {d}/tmp/fastcgi; uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;\n\
                 include shipshape/shipshape.conf;\n}}\n"
            ),
        )
        .expect("write");
        let certificate = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .arg("-subj")
            .arg(format!("/CN={host}"))
            .arg("-addext")
            .arg(format!("subjectAltName=DNS:{host}"))
            .arg("-keyout")
            .arg(conf.join("tls/privkey.pem"))
            .arg("-out")
            .arg(conf.join("tls/fullchain.pem"))
            .output()
            .expect("openssl runs");
        assert!(certificate.status.success(), "{}", String::from_utf8_lossy(&certificate.stderr));

        let socket = dir.join("run/blue.sock");
        std::os::unix::fs::symlink("blue.sock", dir.join("run/live.sock")).expect("link");
        let env = [("TRUSTED_PROXIES", "127.0.0.1/32"), ("ALLOWED_HOSTS", host)];
        let service = serve(&format!("unix:{}", socket.display()), &env, || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        let nginx = program("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(conf.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let edge = Self { dir, nginx, service, http, https };
        await_listening(https, Duration::from_secs(10), || {
            format!("nginx did not start: {}", std::fs::read_to_string(edge.dir.join("error.log")).unwrap_or_default())
        });
        edge
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers before it exits.
        let _ = Command::new("kill").args(["-TERM", &self.nginx.id().to_string()]).status();
        let _ = self.nginx.wait();
        let _ = self.service.kill();
        let _ = self.service.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Edge {
    /// nginx's configuration file, for `nginx -t` and `nginx -s reload`.
    pub(crate) fn nginx_conf(&self) -> PathBuf {
        self.dir.join("conf/nginx.conf")
    }

    /// Where shipshape.conf's `ssl_certificate` and `ssl_certificate_key` are.
    pub(crate) fn cert_dir(&self) -> PathBuf {
        self.dir.join("conf/tls")
    }
}
