//! Moving traffic between the slots: `run/live.sock` links to the serving slot's socket and
//! `run/standby.sock` to the other one; nginx connects through them for every request, live first and
//! standby as its `backup` (deploy/nginx/upstream.conf keeps no idle connections to the service).
//! Replacing a link with `rename(2)` is atomic, and nginx is never reloaded, so no client connection is
//! closed. A live release that stops accepting is covered by the standby one (nginx moves a request on
//! when it cannot connect, before sending anything), until the deploy switches back.

use anyhow::Result;

use super::config::HostConfig;
use super::records::link_atomically;
use super::slots::Slot;

/// Points the live link at `active`'s socket and the standby link at the other slot's.
pub(crate) fn switch(config: &HostConfig, active: Slot) -> Result<()> {
    // Relative, so the whole root can move (or be mounted elsewhere) without breaking the links.
    link_atomically(&config.live_socket(), &format!("{}.sock", active.name()))?;
    link_atomically(&config.standby_socket(), &format!("{}.sock", active.other().name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_moves_atomically_between_the_slots() {
        let root = camino::Utf8PathBuf::try_from(std::env::temp_dir())
            .expect("utf-8")
            .join(format!("live-{}", std::process::id()));
        std::fs::create_dir_all(root.join("run")).expect("mkdir");
        std::fs::write(root.join("deploy.env"), "").expect("write");
        let config = HostConfig::load(&root).expect("config");
        let links = || {
            [config.live_socket(), config.standby_socket()]
                .map(|path| std::fs::read_link(path).ok().and_then(|target| target.to_str().map(str::to_owned)))
        };
        assert_eq!(links(), [None, None]);
        switch(&config, Slot::Blue).expect("switch");
        assert_eq!(links(), [Some("blue.sock".to_owned()), Some("green.sock".to_owned())]);
        switch(&config, Slot::Green).expect("switch");
        assert_eq!(links(), [Some("green.sock".to_owned()), Some("blue.sock".to_owned())]);
        assert!(!root.join("run/live.sock.next").exists() && !root.join("run/standby.sock.next").exists());
        let _ = std::fs::remove_dir_all(root);
    }
}
