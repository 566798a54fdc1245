//! The few S3 calls off-site backups need (put, get, list, delete), signed by `rusty-s3` and sent with
//! `ureq`: any S3-compatible store (AWS, MinIO, Ceph, R2, moto). Requests are presigned URLs, which hold
//! a signature: no URL is ever printed.

use std::fs::File;
use std::time::Duration;

use anyhow::{Context as _, Result};
use camino::Utf8Path;
use rusty_s3::actions::{ListObjectsV2, S3Action as _};
use rusty_s3::{Bucket, Credentials, UrlStyle};

/// How long a signed request stays valid: enough for a large upload to start.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);

#[derive(Debug)]
pub(crate) struct Store {
    bucket: Bucket,
    credentials: Credentials,
    /// For messages: `bucket` at `endpoint`.
    name: String,
}

impl Store {
    pub(crate) fn new(endpoint: &str, region: &str, bucket: &str, key_id: String, secret: String) -> Result<Self> {
        let url = endpoint.parse().with_context(|| format!("BACKUP_S3_ENDPOINT={endpoint} is not a URL"))?;
        // Path style (`endpoint/bucket/key`) works with every S3-compatible store.
        let bucket_handle = Bucket::new(url, UrlStyle::Path, bucket.to_owned(), region.to_owned())
            .with_context(|| format!("BACKUP_S3_ENDPOINT={endpoint}: only http and https endpoints work"))?;
        Ok(Self {
            bucket: bucket_handle,
            credentials: Credentials::new(key_id, secret),
            name: format!("{bucket} at {endpoint}"),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn put(&self, key: &str, file: &Utf8Path) -> Result<()> {
        let url = self.bucket.put_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let body = File::open(file).with_context(|| format!("opening {file}"))?;
        let length = body.metadata().with_context(|| format!("reading {file}"))?.len();
        ureq::put(url.as_str())
            .header("content-length", length.to_string())
            .send(body)
            .map_err(|error| failed("uploading", key, &error))?;
        Ok(())
    }

    pub(crate) fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let url = self.bucket.put_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        ureq::put(url.as_str()).send(bytes).map_err(|error| failed("uploading", key, &error))?;
        Ok(())
    }

    /// Downloads `key` into `file` (replaced).
    pub(crate) fn get(&self, key: &str, file: &Utf8Path) -> Result<()> {
        let url = self.bucket.get_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let response = ureq::get(url.as_str()).call().map_err(|error| failed("downloading", key, &error))?;
        let mut out = File::create(file).with_context(|| format!("creating {file}"))?;
        std::io::copy(&mut response.into_body().into_reader(), &mut out)
            .with_context(|| format!("downloading {key} into {file}"))?;
        Ok(())
    }

    pub(crate) fn get_text(&self, key: &str) -> Result<String> {
        let url = self.bucket.get_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let response = ureq::get(url.as_str()).call().map_err(|error| failed("downloading", key, &error))?;
        response.into_body().read_to_string().with_context(|| format!("reading {key}"))
    }

    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        let url = self.bucket.delete_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        ureq::delete(url.as_str()).call().map_err(|error| failed("deleting", key, &error))?;
        Ok(())
    }

    /// The key of every object under `prefix`, page after page.
    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            action.with_prefix(prefix);
            if let Some(token) = &token {
                action.with_continuation_token(token.clone());
            }
            let url = action.sign(SIGNED_FOR);
            let response = ureq::get(url.as_str()).call().map_err(|error| failed("listing", prefix, &error))?;
            let text = response.into_body().read_to_string().context("reading the listing")?;
            let page = ListObjectsV2::parse_response(&text)
                .with_context(|| format!("the listing of {} is not S3's XML", self.name))?;
            objects.extend(page.contents.into_iter().map(|object| object.key));
            match page.next_continuation_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(objects),
            }
        }
    }
}

/// A failed request, named by what and which key; never by its URL, which is signed, so other errors
/// (which may quote the request) are reduced to their kind.
fn failed(doing: &str, key: &str, error: &ureq::Error) -> anyhow::Error {
    let why = match error {
        ureq::Error::StatusCode(403) => {
            "403: the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) are refused".to_owned()
        }
        ureq::Error::StatusCode(404) => "404: no such bucket or object (BACKUP_S3_BUCKET, BACKUP_S3_PREFIX)".to_owned(),
        ureq::Error::StatusCode(code) => format!("the store answered {code}"),
        ureq::Error::Io(io) => format!("{} (is BACKUP_S3_ENDPOINT reachable?)", io.kind()),
        ureq::Error::Timeout(_) => "timed out".to_owned(),
        _ => "the request failed before an answer (TLS, DNS or protocol)".to_owned(),
    };
    anyhow::anyhow!("{doing} {key}: {why}")
}
