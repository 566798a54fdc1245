//! A real S3-compatible server for a test: `moto_server` (PyPI `moto[server]`, installed by `cargo xtask
//! setup`) on a free loopback port, stopped when dropped. The test reads and damages objects with
//! requests of its own, signed with the same credentials as the xtask's.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};

/// The credentials tests give the xtask (moto accepts any); the secret must never be printed.
pub(crate) const KEY_ID: &str = "test-key-id";
pub(crate) const SECRET_KEY: &str = "s3-secret-SENTINEL-0123456789";

pub(crate) struct S3Server {
    child: Child,
    pub(crate) endpoint: String,
}

impl S3Server {
    /// A running server with `bucket` created.
    pub(crate) fn start(bucket: &str) -> Self {
        let port = super::free_port();
        // Installed by the preflight into target/tools/pypi/moto_server (a script needing its PYTHONPATH),
        // or anywhere.
        let pypi = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/pypi/moto_server");
        let pinned = pypi.join("bin/moto_server");
        let mut command = if pinned.is_file() { Command::new(pinned) } else { super::program("moto_server") };
        let child = command
            .env("PYTHONPATH", &pypi)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server runs (cargo xtask setup installs it)");
        let server = Self { child, endpoint: format!("http://127.0.0.1:{port}") };
        super::await_listening(port, Duration::from_secs(30), || "moto_server did not listen within 30 s".to_owned());
        server.put(&format!("/{bucket}"), b"");
        server
    }

    fn put(&self, path: &str, body: &[u8]) {
        ureq::put(&format!("{}{path}", self.endpoint))
            .header("content-type", "application/octet-stream")
            .send(body)
            .unwrap_or_else(|error| panic!("PUT {path}: {error}"));
    }

    fn signed(&self, bucket: &str) -> (Bucket, Credentials) {
        let url = self.endpoint.parse().expect("URL");
        let bucket = Bucket::new(url, UrlStyle::Path, bucket.to_owned(), "us-east-1".to_owned()).expect("bucket");
        (bucket, Credentials::new(KEY_ID, SECRET_KEY))
    }

    /// Stores `body` as `key`, with the credentials the xtask gets.
    pub(crate) fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let (bucket, credentials) = self.signed(bucket);
        let url = bucket.put_object(Some(&credentials), key).sign(Duration::from_secs(60));
        ureq::put(url.as_str()).send(body).unwrap_or_else(|error| panic!("PUT {key}: {error}"));
    }

    pub(crate) fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let (bucket, credentials) = self.signed(bucket);
        let url = bucket.get_object(Some(&credentials), key).sign(Duration::from_secs(60));
        let response = ureq::get(url.as_str()).call().unwrap_or_else(|error| panic!("GET {key}: {error}"));
        response.into_body().read_to_vec().expect("body")
    }

    /// The keys under `prefix` in `bucket`, sorted.
    pub(crate) fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (bucket, credentials) = self.signed(bucket);
        let mut action = bucket.list_objects_v2(Some(&credentials));
        action.with_prefix(prefix);
        let url = action.sign(Duration::from_secs(60));
        let response = ureq::get(url.as_str()).call().unwrap_or_else(|error| panic!("LIST {prefix}: {error}"));
        let listing = response.into_body().read_to_string().expect("listing");
        let mut keys: Vec<String> =
            listing.split("<Key>").skip(1).filter_map(|rest| rest.split("</Key>").next()).map(str::to_owned).collect();
        keys.sort();
        keys
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
