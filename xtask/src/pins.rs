//! Every third-party reference the xtask pins, in one table: actions by full commit SHA, images by
//! digest. Bump a pin here, then run `cargo xtask workflows`.

#[derive(Debug)]
pub(crate) struct ActionPin {
    pub(crate) repo: &'static str,
    pub(crate) sha: &'static str,
    /// The release the SHA was tagged as; written after the pin as `# vX.Y.Z`.
    pub(crate) version: &'static str,
}

impl ActionPin {
    pub(crate) fn reference(&self) -> String {
        format!("{}@{}", self.repo, self.sha)
    }
}

pub(crate) const CHECKOUT: ActionPin =
    ActionPin { repo: "actions/checkout", sha: "11bd71901bbe5b1630ceea73d27597364c9af683", version: "v4.2.2" };
pub(crate) const CACHE: ActionPin =
    ActionPin { repo: "actions/cache", sha: "5a3ec84eff668545956fd18022155c47e93e2684", version: "v4.2.3" };
pub(crate) const UPLOAD_ARTIFACT: ActionPin =
    ActionPin { repo: "actions/upload-artifact", sha: "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", version: "v7.0.0" };
pub(crate) const DOWNLOAD_ARTIFACT: ActionPin =
    ActionPin { repo: "actions/download-artifact", sha: "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", version: "v8.0.1" };
pub(crate) const SETUP_BUILDX: ActionPin = ActionPin {
    repo: "docker/setup-buildx-action",
    sha: "37fe631027851001ddb9b187196cc803df7f5f0e",
    version: "v4.3.0",
};
pub(crate) const LOGIN: ActionPin =
    ActionPin { repo: "docker/login-action", sha: "4907a6ddec9925e35a0a9e82d7399ccc52663121", version: "v4.1.0" };
pub(crate) const BUILD_PUSH: ActionPin =
    ActionPin { repo: "docker/build-push-action", sha: "53b7df96c91f9c12dcc8a07bcb9ccacbed38856a", version: "v7.3.0" };
pub(crate) const ATTEST_PROVENANCE: ActionPin = ActionPin {
    repo: "actions/attest-build-provenance",
    sha: "a2bbfa25375fe432b6a289bc6b6cd05ecd0c4c32",
    version: "v4.1.0",
};
pub(crate) const ACTIONS: &[&ActionPin] =
    &[&CHECKOUT, &CACHE, &UPLOAD_ARTIFACT, &DOWNLOAD_ARTIFACT, &SETUP_BUILDX, &LOGIN, &BUILD_PUSH, &ATTEST_PROVENANCE];

/// The PostgreSQL image for the CI service and the Docker fallback (the official 15-alpine index).
pub(crate) const POSTGRES_IMAGE: &str =
    "postgres:15-alpine@sha256:fe0737ba566a2c5b2a28f34433c0a423261900ec17b9bf7ad115e1aae7e57f1b";

/// The Redis image for the CI service (the official 7.4-alpine index).
pub(crate) const REDIS_IMAGE: &str =
    "redis:7.4-alpine@sha256:ff02b58f971e7d7d156a1267e283fcbbeee91773b6aa36c49dac28ecfe28eadf";
