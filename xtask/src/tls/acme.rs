//! One ACME order (RFC 8555) through instant-acme: the account (created once, its key kept 0600 in the
//! state directory), an HTTP-01 challenge per name written where nginx serves
//! `/.well-known/acme-challenge/` on port 80, a fresh P-256 key and its CSR (openssl, the key passed
//! on stdin, never in argv or on disk), and the certificate chain.

use std::fmt;
use std::os::unix::fs::DirBuilderExt as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use camino::{Utf8Path, Utf8PathBuf};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
};
use sha2::{Digest as _, Sha256};

use super::transport::{Transport, block_on};
use crate::deploy::layout::write_atomically;

/// Where and as whom to order.
pub(crate) struct Client<'a> {
    pub(crate) directory: &'a str,
    pub(crate) directory_ca: Option<&'a Utf8Path>,
    pub(crate) email: Option<&'a str>,
    /// The account key lives here (0700).
    pub(crate) state_dir: &'a Utf8Path,
    /// nginx serves `<webroot>/.well-known/acme-challenge/` over plain HTTP.
    pub(crate) webroot: &'a Utf8Path,
}

/// A private key in PEM: never printed.
pub(crate) struct PrivateKeyPem(pub(crate) String);

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem([redacted])")
    }
}

/// What an order brings: the chain (the server's certificate first) and its key.
#[derive(Debug)]
pub(crate) struct Issued {
    pub(crate) fullchain: String,
    pub(crate) key: PrivateKeyPem,
}

/// How long the CA may take to validate and to issue.
const PATIENCE: Duration = Duration::from_secs(120);

impl Client<'_> {
    /// Orders a certificate for `domains` (the first is the subject).
    pub(crate) fn order(&self, domains: &[String]) -> Result<Issued> {
        let transport = Transport::new(self.directory_ca)?;
        block_on(self.order_with(transport, domains))
    }

    async fn order_with(&self, transport: Transport, domains: &[String]) -> Result<Issued> {
        let account = self.account(transport).await?;
        let identifiers: Vec<Identifier> = domains.iter().map(|name| Identifier::Dns(name.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .with_context(|| format!("{} refused a new order for {}", self.directory, domains.join(", ")))?;
        let mut challenges = Challenges { dir: self.webroot.join(".well-known/acme-challenge"), written: Vec::new() };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.context("fetching an authorization")?;
            let name = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => bail!("the CA's authorization for {name} is {other:?}, not pending"),
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| anyhow!("the CA offers no HTTP-01 challenge for {name}"))?;
            challenges.write(&challenge.token, challenge.key_authorization().as_str())?;
            challenge.set_ready().await.with_context(|| format!("telling the CA the challenge for {name} is ready"))?;
        }

        let deadline = Instant::now() + PATIENCE;
        loop {
            let state = order.refresh().await.context("polling the order")?;
            match state.status {
                OrderStatus::Ready | OrderStatus::Valid => break,
                OrderStatus::Invalid => bail!("{}", invalid(&mut order, self.webroot).await),
                OrderStatus::Pending | OrderStatus::Processing if Instant::now() < deadline => pause(),
                other => bail!("the CA left the order {other:?} for {}s", PATIENCE.as_secs()),
            }
        }
        drop(challenges);

        let key = PrivateKeyPem(openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], b"")?);
        let names: Vec<String> = domains.iter().map(|name| format!("DNS:{name}")).collect();
        let (subject, alt_names) = (format!("/CN={}", domains[0]), format!("subjectAltName={}", names.join(",")));
        let csr = openssl_bytes(
            &["req", "-new", "-key", "/dev/stdin", "-subj", &subject, "-addext", &alt_names, "-outform", "DER"],
            key.0.as_bytes(),
        )?;
        order.finalize_csr(&csr).await.context("the CA refused the certificate request")?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(fullchain) = order.certificate().await.context("fetching the certificate")? {
                return Ok(Issued { fullchain, key });
            }
            if Instant::now() >= deadline {
                bail!("the CA did not issue the certificate within {}s", PATIENCE.as_secs());
            }
            pause();
        }
    }

    /// The account this state directory holds for this directory, created (terms agreed) the first time.
    async fn account(&self, transport: Transport) -> Result<Account> {
        let digest = format!("{:x}", Sha256::digest(self.directory.as_bytes()));
        let file = self.state_dir.join(format!("account-{}.json", &digest[..16]));
        let builder = Account::builder_with_http(Box::new(transport));
        if let Ok(text) = std::fs::read_to_string(&file) {
            let credentials: AccountCredentials =
                serde_json::from_str(&text).with_context(|| format!("{file} is not an ACME account: remove it"))?;
            return builder
                .from_credentials(credentials)
                .await
                .with_context(|| format!("loading the account of {file}"));
        }
        let contact = self.email.map(|email| format!("mailto:{email}"));
        let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
        let (account, credentials) = builder
            .create(&new, self.directory.to_owned(), None)
            .await
            .with_context(|| format!("creating an ACME account at {}", self.directory))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.state_dir)
            .with_context(|| format!("creating {}", self.state_dir))?;
        write_atomically(&file, &serde_json::to_string(&credentials)?, 0o600)?;
        println!("tls: created an ACME account at {}, key in {file}", self.directory);
        Ok(account)
    }
}

/// Why the order failed: each challenge's problem as the CA reports it.
async fn invalid(order: &mut instant_acme::Order, webroot: &Utf8Path) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let name = authorization.identifier().to_string();
        if let Ok(state) = authorization.refresh().await {
            for challenge in state.challenges.iter().filter_map(|challenge| challenge.error.as_ref()) {
                reasons.push(format!("{name}: {challenge}"));
            }
        }
    }
    format!(
        "the CA could not validate the names ({}); nginx must serve {webroot}/.well-known/acme-challenge/ \
         at http://NAME/.well-known/acme-challenge/ (deploy/nginx/shipshape.conf, port 80)",
        if reasons.is_empty() { "no reason given".to_owned() } else { reasons.join("; ") }
    )
}

fn pause() {
    std::thread::sleep(Duration::from_millis(500));
}

/// The challenge responses written for the CA, removed on every way out.
struct Challenges {
    dir: Utf8PathBuf,
    written: Vec<Utf8PathBuf>,
}

impl Challenges {
    fn write(&mut self, token: &str, key_authorization: &str) -> Result<()> {
        // A token is base64url (RFC 8555 §8.3); anything else could name a path.
        if token.is_empty() || !token.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')) {
            bail!("the CA sent a challenge token that is not base64url: {token:?}");
        }
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir))?;
        let file = self.dir.join(token);
        // nginx's workers read it: world-readable, and it holds nothing secret.
        write_atomically(&file, key_authorization, 0o644)?;
        self.written.push(file);
        Ok(())
    }
}

impl Drop for Challenges {
    fn drop(&mut self) {
        for file in &self.written {
            let _ = std::fs::remove_file(file);
        }
    }
}

fn openssl(args: &[&str], stdin: &[u8]) -> Result<String> {
    String::from_utf8(openssl_bytes(args, stdin)?).context("openssl printed something that is not text")
}

/// Runs openssl with `stdin`, returning its stdout; a failure carries its stderr.
fn openssl_bytes(args: &[&str], stdin: &[u8]) -> Result<Vec<u8>> {
    let program = crate::tools::OPENSSL.path().context("openssl is not installed")?;
    let output = duct::cmd(program, args)
        .stdin_bytes(stdin)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("running openssl")?;
    if !output.status.success() {
        bail!("openssl {} failed: {}", args[0], String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(output.stdout)
}
