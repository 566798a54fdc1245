//! The previous release on the new schema, black-box: its binary migrates a throwaway database and
//! serves while data is written through its API; the new migrations are applied under it; then the
//! same binary — still running, then started again as a rollback would — signs up, logs in, makes a
//! token, creates, lists, reads, changes and deletes notes, and reads what was written before.
//! Every failure names the request and the response.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Value, json};

use crate::cleanup;
use crate::http_probe::{self, Reply, Request, Target};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "round-trip Passphrase 7 across releases";

/// The two binaries and the database they share.
pub(crate) struct Releases<'a> {
    pub(crate) base: &'a Utf8Path,
    pub(crate) new: &'a Utf8Path,
    pub(crate) database_url: &'a str,
    /// Where the servers' logs go.
    pub(crate) logs: &'a Utf8Path,
}

pub(crate) fn run(releases: &Releases<'_>) -> Result<()> {
    migrate(releases.base, releases, "the base's `app migrate` on an empty database")?;
    let serving = Server::start(releases.base, releases, "before")?;
    let before = Seeded::write(&serving.api, "before")?;
    migrate(releases.new, releases, "this checkout's `app migrate` while the base serves")?;
    exercise(&serving.api, "after", &before).context("the base release, serving across the migration")?;
    serving.stop();
    // A rollback runs the base's migration step (the Kubernetes Job, Fly's release_command) and starts it afresh.
    migrate(releases.base, releases, "the base's `app migrate` on the new schema (what a rollback runs)")?;
    let restarted = Server::start(releases.base, releases, "rollback")?;
    exercise(&restarted.api, "rollback", &before).context("the base release, started again on the new schema")?;
    restarted.stop();
    Ok(())
}

/// The variables every run of a binary gets: nothing from the operator's shell but `PATH`.
fn environment(releases: &Releases<'_>) -> Vec<(String, String)> {
    vec![
        ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
        ("APP_ENV".to_owned(), "development".to_owned()),
        ("DATABASE_URL".to_owned(), releases.database_url.to_owned()),
        ("MIGRATE_ON_START".to_owned(), "false".to_owned()),
    ]
}

fn migrate(binary: &Utf8Path, releases: &Releases<'_>, what: &str) -> Result<()> {
    let output = duct::cmd(binary.as_std_path(), ["migrate"])
        .full_env(environment(releases))
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .with_context(|| format!("starting {binary}"))?;
    if !output.status.success() {
        bail!("{what} failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stdout).trim());
    }
    Ok(())
}

/// `app serve` on a free loopback port, killed on every way out.
struct Server {
    handle: Arc<duct::Handle>,
    api: Api,
    _kill: cleanup::Guard,
}

impl Server {
    fn start(binary: &Utf8Path, releases: &Releases<'_>, name: &str) -> Result<Self> {
        let (port, metrics) = (free_port()?, free_port()?);
        let log = releases.logs.join(format!("{name}.log"));
        let mut env = environment(releases);
        env.push(("LISTEN_ADDR".to_owned(), format!("127.0.0.1:{port}")));
        env.push(("METRICS_ADDR".to_owned(), format!("127.0.0.1:{metrics}")));
        let handle = Arc::new(
            duct::cmd(binary.as_std_path(), ["serve"])
                .full_env(env)
                .stderr_to_stdout()
                .stdout_path(&log)
                .unchecked()
                .start()
                .with_context(|| format!("starting {binary} serve"))?,
        );
        let kill = cleanup::register({
            let handle = Arc::clone(&handle);
            move || {
                let _ = handle.kill();
            }
        });
        let server = Self { handle, api: Api { port, log }, _kill: kill };
        server.wait_until_ready()?;
        Ok(server)
    }

    fn wait_until_ready(&self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(output)) = self.handle.try_wait() {
                bail!(
                    "the base's `app serve` exited with {} before it was ready{}",
                    output.status,
                    self.api.log_tail()
                );
            }
            if matches!(self.api.send("GET", "/readyz", &[], None), Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the base's `app serve` did not answer GET /readyz 200 within {READY_TIMEOUT:?}{}",
                    self.api.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(self) {
        let _ = self.handle.kill();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How a request proves who it comes from.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Nobody,
    /// A browser session (`name=value`): unsafe methods say they are same-origin, as a browser does.
    Cookie(&'a str),
    Bearer(&'a str),
}

struct Api {
    port: u16,
    log: Utf8PathBuf,
}

impl Api {
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Result<(u16, Reply)> {
        let target = Target { https: false, host: "127.0.0.1".to_owned(), port: self.port };
        let host = target.authority();
        let request = Request { method, path, host: &host, headers };
        let reply = match body {
            Some(body) => http_probe::send_json(&target, &request, &body.to_string())?,
            None => http_probe::send(&target, &request, false)?,
        };
        let status = match &reply {
            Reply::Response(response) => response.status,
            Reply::Closed => 0,
        };
        Ok((status, reply))
    }

    /// Sends one request and insists on `expected`; the JSON body, or an error naming the request and
    /// the response (and the end of the server's log).
    fn call(&self, auth: Auth<'_>, method: &str, path: &str, body: Option<&Value>, expected: u16) -> Result<Response> {
        let bearer;
        let mut headers: Vec<(&str, &str)> = Vec::new();
        match auth {
            Auth::Nobody => {}
            Auth::Cookie(cookie) => headers.extend([("Cookie", cookie), ("Sec-Fetch-Site", "same-origin")]),
            Auth::Bearer(token) => {
                bearer = format!("Bearer {token}");
                headers.push(("Authorization", &bearer));
            }
        }
        let request = match body {
            Some(body) => format!("{method} {path} {}", redacted(body)),
            None => format!("{method} {path}"),
        };
        let (status, reply) = self.send(method, path, &headers, body).with_context(|| request.clone())?;
        let Reply::Response(response) = reply else {
            bail!("{request}: the connection closed without a response{}", self.log_tail());
        };
        if status != expected {
            bail!("{request} answered {status}, expected {expected}: {}{}", response.body.trim(), self.log_tail());
        }
        let json = if response.body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&response.body).with_context(|| {
                format!("{request} answered {status} with a body that is not JSON: {}", response.body)
            })?
        };
        Ok(Response { request, json, cookie: response.header("set-cookie").map(session_cookie) })
    }

    /// The last lines the server logged, to read beside a failed request.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
        if tail.is_empty() { String::new() } else { format!("\n  the base server's last log lines:\n    {tail}") }
    }
}

/// A request body as the messages show it: passwords masked.
fn redacted(body: &Value) -> Value {
    let mut shown = body.clone();
    if let Some(password) = shown.get_mut("password") {
        *password = Value::from("***");
    }
    shown
}

/// `name=value` of a `Set-Cookie` header.
fn session_cookie(header: &str) -> String {
    header.split(';').next().unwrap_or_default().trim().to_owned()
}

struct Response {
    request: String,
    json: Value,
    cookie: Option<String>,
}

impl Response {
    fn text(&self, field: &str) -> Result<String> {
        self.json[field]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{} answered without a `{field}` string: {}", self.request, self.json))
    }
}

/// A note as the API shows it, reduced to what must survive.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Note {
    id: String,
    title: String,
    body: String,
}

impl Note {
    fn from_json(json: &Value) -> Option<Self> {
        Some(Self {
            id: json["id"].as_str()?.to_owned(),
            title: json["title"].as_str()?.to_owned(),
            body: json["body"].as_str()?.to_owned(),
        })
    }
}

/// An account with a session, a token and notes.
struct Seeded {
    email: String,
    token: String,
    notes: Vec<Note>,
}

impl Seeded {
    /// Signs up, logs in, makes a token and writes notes with it.
    fn write(api: &Api, label: &str) -> Result<Self> {
        let email = format!("{label}-{}@migrations.test", std::process::id());
        let credentials = json!({ "email": email, "password": PASSWORD });
        api.call(Auth::Nobody, "POST", "/api/v1/accounts", Some(&credentials), 201)?;
        let login = api.call(Auth::Nobody, "POST", "/api/v1/session", Some(&credentials), 200)?;
        let cookie = login.cookie.clone().with_context(|| format!("{} set no session cookie", login.request))?;
        let token = create_token(api, &cookie, label)?;
        let mut notes = Vec::new();
        for (title, body) in [(format!("{label}: first"), "line one\nline two ✓"), (format!("{label}: second"), "")] {
            let note = json!({ "title": title, "body": body });
            let response = api.call(Auth::Bearer(&token), "POST", "/api/v1/notes", Some(&note), 201)?;
            notes.push(
                Note::from_json(&response.json)
                    .with_context(|| format!("{} answered with no note: {}", response.request, response.json))?,
            );
        }
        Ok(Self { email, token, notes })
    }
}

/// A token from the session: the password entered again, as the API asks; a base from before that
/// rule refuses the unknown field, and gets the request it knows.
fn create_token(api: &Api, cookie: &str, label: &str) -> Result<String> {
    let reauthenticated = json!({ "name": label, "password": PASSWORD });
    let created = match api.call(Auth::Cookie(cookie), "POST", "/api/v1/tokens", Some(&reauthenticated), 201) {
        Err(error) if format!("{error:#}").contains("unknown field `password`") => {
            api.call(Auth::Cookie(cookie), "POST", "/api/v1/tokens", Some(&json!({ "name": label })), 201)?
        }
        other => other?,
    };
    created.text("token")
}

/// The whole API once with a new account, then the rows written before the migration.
fn exercise(api: &Api, label: &str, before: &Seeded) -> Result<()> {
    api.call(Auth::Nobody, "GET", "/readyz", None, 200)?;
    let fresh = Seeded::write(api, label)?;
    let token = Auth::Bearer(&fresh.token);
    let note = &fresh.notes[0];
    let path = format!("/api/v1/notes/{}", note.id);
    expect_notes(api, token, &fresh.notes)?;
    let got = api.call(token, "GET", &path, None, 200)?;
    same_note(&got, note)?;
    let changed = Note { title: format!("{label}: changed"), ..note.clone() };
    let patched = api.call(token, "PATCH", &path, Some(&json!({ "title": changed.title })), 200)?;
    same_note(&patched, &changed)?;
    same_note(&api.call(token, "GET", &path, None, 200)?, &changed)?;
    api.call(token, "DELETE", &path, None, 204)?;
    api.call(token, "GET", &path, None, 404)?;

    // What the base wrote before the migration: its login, its token and its notes still work.
    let credentials = json!({ "email": before.email, "password": PASSWORD });
    api.call(Auth::Nobody, "POST", "/api/v1/session", Some(&credentials), 200)?;
    expect_notes(api, Auth::Bearer(&before.token), &before.notes)?;
    for note in &before.notes {
        same_note(
            &api.call(Auth::Bearer(&before.token), "GET", &format!("/api/v1/notes/{}", note.id), None, 200)?,
            note,
        )?;
    }
    Ok(())
}

fn expect_notes(api: &Api, auth: Auth<'_>, expected: &[Note]) -> Result<()> {
    let listed = api.call(auth, "GET", "/api/v1/notes?limit=100", None, 200)?;
    let items: Vec<Note> = listed.json["items"]
        .as_array()
        .map(|items| items.iter().filter_map(Note::from_json).collect())
        .unwrap_or_default();
    if items != expected {
        bail!("{} listed {items:?}, expected {expected:?}", listed.request);
    }
    Ok(())
}

fn same_note(response: &Response, expected: &Note) -> Result<()> {
    match Note::from_json(&response.json) {
        Some(note) if note == *expected => Ok(()),
        _ => bail!("{} answered {}, expected {expected:?}", response.request, response.json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_show_a_password() {
        let shown = redacted(&json!({ "email": "a@b.c", "password": PASSWORD })).to_string();
        assert!(!shown.contains(PASSWORD) && shown.contains("***") && shown.contains("a@b.c"), "{shown}");
    }

    #[test]
    fn the_session_cookie_is_its_name_and_value() {
        assert_eq!(session_cookie("session=abc; Path=/; HttpOnly; SameSite=Lax"), "session=abc");
        assert_eq!(session_cookie("__Host-session=x"), "__Host-session=x");
    }
}
