//! The release of the platform targets: a container image reference, `name[:tag][@sha256:digest]`,
//! checked before anything is deployed and compared with what the platform reports running.

use std::fmt;

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image {
    reference: String,
    name: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Image {
    /// A reference the platform can pull the same content from again: a digest, or a tag other than `latest`.
    pub(crate) fn release(reference: &str) -> Result<Self> {
        let image = Self::parse(reference)?;
        let fix = "pass the reference CI pushed, e.g. --image ghcr.io/acme/shipshape-app@sha256:<digest>";
        if image.name.chars().any(|c| c.is_ascii_uppercase()) {
            bail!("--image {reference}: repository names are lowercase (a placeholder such as OWNER left in?); {fix}");
        }
        match (&image.tag, &image.digest) {
            (None, None) => bail!("--image {reference} has neither a tag nor a digest; {fix}"),
            (Some(tag), None) if tag == "latest" => {
                bail!("--image {reference}: `latest` moves, so neither the deploy nor its undo is repeatable; {fix}")
            }
            _ => Ok(image),
        }
    }

    /// Any reference, as a platform reports it.
    pub(crate) fn parse(reference: &str) -> Result<Self> {
        if reference.is_empty() || reference.chars().any(char::is_whitespace) {
            bail!("{reference:?} is not an image reference");
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => {
                let hex = digest.strip_prefix("sha256:").unwrap_or_default();
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
                    bail!("{reference}: the digest is not sha256:<64 lowercase hex digits>");
                }
                (rest, Some(digest.to_owned()))
            }
            None => (reference, None),
        };
        // A colon after the last slash starts the tag; one before it is the registry's port.
        let last_part = rest.rfind('/').map_or(0, |slash| slash + 1);
        let (name, tag) = match rest[last_part..].split_once(':') {
            Some((_, tag)) => (&rest[..rest.len() - tag.len() - 1], Some(tag.to_owned())),
            None => (rest, None),
        };
        if name.is_empty() || tag.as_deref() == Some("") {
            bail!("{reference:?} is not an image reference");
        }
        Ok(Self { reference: reference.to_owned(), name: name.to_owned(), tag, digest })
    }

    /// The repository, without tag or digest.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// True when `other` is this release: the same digest, or (without one) the same repository and tag.
    pub(crate) fn is(&self, other: &str) -> bool {
        let Ok(other) = Self::parse(other) else {
            return false;
        };
        match &self.digest {
            Some(digest) => other.digest.as_ref() == Some(digest),
            None => other.name == self.name && other.tag == self.tag,
        }
    }
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_release_is_pinned_by_digest_or_a_fixed_tag() {
        let pinned = Image::release(&format!("ghcr.io/acme/app@{DIGEST}")).expect("a digest");
        assert_eq!((pinned.name(), pinned.digest()), ("ghcr.io/acme/app", Some(DIGEST)));
        let tagged = Image::release("localhost:5000/acme/app:v1.2").expect("a tag");
        assert_eq!((tagged.name(), tagged.tag.as_deref()), ("localhost:5000/acme/app", Some("v1.2")));
        for (bad, why) in [
            ("ghcr.io/acme/app", "neither a tag nor a digest"),
            ("localhost:5000/acme/app", "neither a tag nor a digest"),
            ("ghcr.io/acme/app:latest", "`latest` moves"),
            ("ghcr.io/OWNER/shipshape-app:RELEASE", "lowercase"),
            ("ghcr.io/acme/app@sha256:abc", "64 lowercase hex"),
            ("ghcr.io/acme/app:", "not an image reference"),
        ] {
            let error = Image::release(bad).expect_err(bad).to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn a_release_is_recognised_as_the_platform_reports_it() {
        let pinned = Image::release(&format!("ghcr.io/acme/app@{DIGEST}")).expect("valid");
        assert!(pinned.is(&format!("ghcr.io/acme/app:v1@{DIGEST}")));
        assert!(!pinned.is("ghcr.io/acme/app:v1"));
        let tagged = Image::release("ghcr.io/acme/app:v1").expect("valid");
        assert!(tagged.is("ghcr.io/acme/app:v1") && tagged.is(&format!("ghcr.io/acme/app:v1@{DIGEST}")));
        assert!(!tagged.is("ghcr.io/acme/app:v2") && !tagged.is("ghcr.io/other/app:v1"));
    }
}
