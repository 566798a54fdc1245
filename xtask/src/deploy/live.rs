//! Moving traffic between the slots: `run/live.sock` links to the serving slot's socket and
//! `run/standby.sock` to the other one; nginx connects through them for every request, live first and
//! standby as its `backup` (deploy/nginx/upstream.conf keeps no idle connections to the service).
//! Replacing a link with `rename(2)` is atomic, and nginx is never reloaded, so no client connection is
//! closed. A live release that stops accepting is covered by the standby one (nginx moves a request on
//! when it cannot connect, before sending anything), until the deploy switches back.

use anyhow::Result;

use super::layout::{Layout, Slot, link_atomically};

/// SWITCH to `active`: the standby link first names the slot serving now, then the live link names
/// `active`. Between the two renames both links name the release that already served, so a crash or a
/// signal there leaves it serving.
pub(crate) fn switch(layout: &Layout, active: Slot) -> Result<()> {
    // Relative, so the whole root can move (or be mounted elsewhere) without breaking the links.
    link_atomically(&layout.standby_socket(), &socket(active.other()))?;
    crate::failpoint::reach("between-links")?;
    link_atomically(&layout.live_socket(), &socket(active))
}

/// Back to `active`, the release that served before (an undo, a recovery): the live link first, so
/// that between the renames both links name `active`.
pub(crate) fn restore(layout: &Layout, active: Slot) -> Result<()> {
    link_atomically(&layout.live_socket(), &socket(active))?;
    link_atomically(&layout.standby_socket(), &socket(active.other()))
}

fn socket(slot: Slot) -> String {
    format!("{}.sock", slot.name())
}

/// The slot the live link names now, if it names one.
pub(crate) fn live(layout: &Layout) -> Option<Slot> {
    let target = std::fs::read_link(layout.live_socket()).ok()?;
    [Slot::Blue, Slot::Green].into_iter().find(|slot| target.as_os_str() == socket(*slot).as_str())
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
        let layout = Layout::new(&root);
        let links = || {
            [layout.live_socket(), layout.standby_socket()]
                .map(|path| std::fs::read_link(path).ok().and_then(|target| target.to_str().map(str::to_owned)))
        };
        assert_eq!(links(), [None, None]);
        switch(&layout, Slot::Blue).expect("switch");
        assert_eq!(links(), [Some("blue.sock".to_owned()), Some("green.sock".to_owned())]);
        switch(&layout, Slot::Green).expect("switch");
        assert_eq!(links(), [Some("green.sock".to_owned()), Some("blue.sock".to_owned())]);
        assert_eq!(live(&layout), Some(Slot::Green));
        restore(&layout, Slot::Blue).expect("restore");
        assert_eq!(links(), [Some("blue.sock".to_owned()), Some("green.sock".to_owned())]);
        assert!(!root.join("run/live.sock.next").exists() && !root.join("run/standby.sock.next").exists());
        let _ = std::fs::remove_dir_all(root);
    }
}
