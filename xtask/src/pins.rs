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
pub(crate) const ACTIONS: &[&ActionPin] = &[&CHECKOUT, &CACHE];

/// The PostgreSQL image for the CI service and the Docker fallback (the official 15-alpine index).
pub(crate) const POSTGRES_IMAGE: &str =
    "postgres:15-alpine@sha256:fe0737ba566a2c5b2a28f34433c0a423261900ec17b9bf7ad115e1aae7e57f1b";

/// The Redis image for the CI service (the official 7.4-alpine index).
pub(crate) const REDIS_IMAGE: &str =
    "redis:7.4-alpine@sha256:ff02b58f971e7d7d156a1267e283fcbbeee91773b6aa36c49dac28ecfe28eadf";
