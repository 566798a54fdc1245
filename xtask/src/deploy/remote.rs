//! The host target on another machine (`--ssh DEST`): the same state machine, run there. The xtask
//! copies itself to `<root>/bin/xtask` and the release binary to `<root>/incoming/` over ssh, checks
//! both by sha256, then runs the very command it was given on the remote host over ssh: the same
//! states, lock, journal and audit log, the same output and exit code. A connection lost mid-deploy
//! ends the remote run at its next line of output, and the next deploy recovers from its journal.
//!
//! In CI the key and the host's public key come from the environment (`DEPLOY_SSH_KEY`, a secret, and
//! `DEPLOY_SSH_KNOWN_HOSTS`): they are written to files only this user can read, removed on exit.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use super::layout::{Layout, ReleaseId};
use super::records::Origin;
use crate::{checksum, cleanup};

/// Where ssh goes: `DEST` as ssh takes it (`user@host`, or a `Host` of the ssh configuration).
#[derive(Debug)]
pub(crate) struct Remote {
    destination: String,
    /// ssh's options (`-F`, `-i`, known hosts).
    options: Vec<String>,
    /// Removes the key and known-hosts files taken from the environment.
    _credentials: Option<cleanup::Guard>,
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

impl Remote {
    pub(crate) fn new(destination: String) -> Result<Self> {
        let mut options = Vec::new();
        if let Some(config) = variable("DEPLOY_SSH_CONFIG") {
            options.extend(["-F".to_owned(), config]);
        }
        let (key, known_hosts) = (variable("DEPLOY_SSH_KEY"), variable("DEPLOY_SSH_KNOWN_HOSTS"));
        let mut credentials = None;
        if key.is_some() || known_hosts.is_some() {
            let dir = Utf8PathBuf::try_from(std::env::temp_dir())
                .context("the temporary directory's path is not UTF-8")?
                .join(format!("shipshape-ssh-{}", std::process::id()));
            fs::DirBuilder::new().mode(0o700).create(&dir).with_context(|| format!("creating {dir}"))?;
            credentials = Some(cleanup::register({
                let dir = dir.clone();
                move || {
                    let _ = fs::remove_dir_all(&dir);
                }
            }));
            if let Some(key) = key {
                // ssh refuses a key file without its final newline, which secrets often lose.
                let path = private_file(&dir.join("key"), &format!("{}\n", key.trim_end()))?;
                options.extend(["-i".to_owned(), path.to_string(), "-o".to_owned(), "IdentitiesOnly=yes".to_owned()]);
            }
            if let Some(hosts) = known_hosts {
                let path = private_file(&dir.join("known_hosts"), &format!("{}\n", hosts.trim_end()))?;
                options.extend(
                    ["-o", &format!("UserKnownHostsFile={path}"), "-o", "StrictHostKeyChecking=yes"].map(String::from),
                );
            }
        }
        Ok(Self { destination, options, _credentials: credentials })
    }

    /// `ssh DEST -- ARGS`, never prompting (a deploy runs unattended): the arguments reach the remote
    /// command as they are here.
    fn ssh(&self, args: &[String]) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.args(&self.options)
            .args(["-o", "BatchMode=yes"])
            .arg(&self.destination)
            .arg("--")
            .arg(shell_words(args))
            .stdin(Stdio::null());
        ssh
    }

    /// Runs `args` on the remote host with this terminal's output; fails when they fail.
    fn run(&self, args: &[String]) -> Result<()> {
        let status = self.ssh(args).status().context("running ssh: install the OpenSSH client")?;
        match status.code() {
            Some(0) => Ok(()),
            Some(255) => bail!("{}", self.unreachable()),
            _ => bail!("`{}` failed on {} ({status})", args.join(" "), self.destination),
        }
    }

    /// Runs `args` on the remote host; their standard output.
    fn output(&self, args: &[String]) -> Result<String> {
        let output = self.ssh(args).output().context("running ssh: install the OpenSSH client")?;
        match output.status.code() {
            Some(0) => Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
            Some(255) => bail!("{}: {}", self.unreachable(), String::from_utf8_lossy(&output.stderr).trim()),
            _ => bail!(
                "`{}` failed on {}: {}",
                args.join(" "),
                self.destination,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }
    }

    fn unreachable(&self) -> String {
        format!(
            "ssh could not reach {}: check that `ssh {} true` works without a prompt (a key, a known host), or point DEPLOY_SSH_CONFIG at an ssh configuration (in CI: DEPLOY_SSH_KEY and DEPLOY_SSH_KNOWN_HOSTS)",
            self.destination, self.destination
        )
    }

    /// Puts `local` at `remote` (mode 0755) unless an identical file is there: copied under a
    /// temporary name, its sha256 checked, renamed.
    fn install(&self, local: &Utf8Path, remote: &Utf8Path) -> Result<()> {
        let expected = checksum::sha256(local)?;
        let current = self.output(&words(&["sh", "-c", "sha256sum \"$0\" 2>/dev/null || true", remote.as_str()]))?;
        if current.split_whitespace().next() == Some(expected.as_str()) {
            return Ok(());
        }
        let partial = format!("{remote}.partial");
        let parent = remote.parent().context("a remote path has a directory")?;
        self.output(&words(&["mkdir", "-p", parent.as_str()]))?;
        // Through ssh's own channel, into a path passed as one quoted word: no second (scp) quoting of
        // the remote path, whatever the root holds.
        let file = fs::File::open(local).with_context(|| format!("opening {local}"))?;
        let mut upload = self.ssh(&words(&["sh", "-c", "cat > \"$0\"", &partial]));
        let copied = upload.stdin(file).output().context("running ssh: install the OpenSSH client")?;
        if !copied.status.success() {
            bail!(
                "copying {local} to {}:{partial} failed: {}",
                self.destination,
                String::from_utf8_lossy(&copied.stderr).trim()
            );
        }
        let copy = self.output(&words(&["sha256sum", &partial]))?;
        if copy.split_whitespace().next() != Some(expected.as_str()) {
            bail!(
                "the copy of {local} on {} does not match it: the transfer failed, nothing was changed",
                self.destination
            );
        }
        self.output(&words(&["chmod", "0755", &partial]))?;
        self.output(&words(&["mv", "-f", &partial, remote.as_str()]))?;
        Ok(())
    }

    /// Runs this xtask's `args` on the remote host with `--root root` and who deploys from what, the
    /// remote xtask brought up to date first.
    pub(crate) fn xtask(&self, layout: &Layout, args: &[&str], origin: &Origin) -> Result<()> {
        let remote_xtask = layout.xtask();
        let this = std::env::current_exe().context("finding the xtask binary")?;
        let this = Utf8PathBuf::try_from(this).context("the xtask binary's path is not UTF-8")?;
        self.install(&this, &remote_xtask)?;
        let mut command = vec![remote_xtask.to_string()];
        command.extend(args.iter().map(|arg| (*arg).to_owned()));
        command.extend(["--root".to_owned(), layout.root().to_string(), "--actor".to_owned(), origin.who.clone()]);
        for (option, value) in [("--commit", &origin.commit), ("--run-url", &origin.run_url)] {
            if let Some(value) = value {
                command.extend([option.to_owned(), value.clone()]);
            }
        }
        self.run(&command)
    }

    /// `deploy --target host` of `binary` as `release` on the remote host.
    pub(crate) fn deploy(
        &self,
        layout: &Layout,
        release: &ReleaseId,
        binary: &Utf8Path,
        origin: &Origin,
    ) -> Result<()> {
        let incoming = layout.incoming(release).join("app");
        self.install(binary, &incoming)?;
        println!("deploy: {binary} is on {} as {incoming}", self.destination);
        let args = ["deploy", "--target", "host", "--release", release.as_str(), "--binary", incoming.as_str()];
        let result = self.xtask(layout, &args, origin);
        // The release is staged under releases/ now (or the deploy failed): the upload is not needed.
        let _ = self.output(&words(&["rm", "-rf", layout.incoming(release).as_str()]));
        result
    }
}

/// Writes `contents` to a new file only this user can read.
fn private_file(path: &Utf8Path, contents: &str) -> Result<Utf8PathBuf> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {path}"))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {path}"))?;
    Ok(path.to_owned())
}

fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

/// One command line for the remote shell, each word single-quoted (ssh joins its arguments with spaces).
fn shell_words(args: &[String]) -> String {
    args.iter().map(|arg| format!("'{}'", arg.replace('\'', r"'\''"))).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_reach_the_remote_shell_unchanged() {
        let line = shell_words(&words(&["echo", "it's", "$HOME", "a b"]));
        assert_eq!(line, r#"'echo' 'it'\''s' '$HOME' 'a b'"#);
        let output = Command::new("sh").arg("-c").arg(&line).output().expect("sh runs");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "it's $HOME a b\n");
    }
}
