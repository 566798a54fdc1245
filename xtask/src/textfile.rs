//! What the scheduled jobs tell Prometheus: gauges in `<dir>/shipshape_<job>.prom` for node_exporter's
//! textfile collector, replaced atomically so that a scrape never reads half a file. Only std, so that
//! the monitoring test compiles this file to learn the names.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// When an off-site backup last succeeded (Unix seconds).
pub(crate) const BACKUP_LAST_SUCCESS: &str = "shipshape_backup_last_success_timestamp_seconds";
/// When one last failed.
pub(crate) const BACKUP_LAST_FAILURE: &str = "shipshape_backup_last_failure_timestamp_seconds";
/// When a restore drill of the newest stored backup last succeeded, and last failed.
pub(crate) const RESTORE_DRILL_LAST_SUCCESS: &str = "shipshape_restore_drill_last_success_timestamp_seconds";
pub(crate) const RESTORE_DRILL_LAST_FAILURE: &str = "shipshape_restore_drill_last_failure_timestamp_seconds";
/// When the backup that drill restored was taken: the newest backup known to restore.
pub(crate) const RESTORED_BACKUP_TAKEN: &str = "shipshape_restore_drill_backup_timestamp_seconds";
/// When the served certificate expires, by `domain`.
pub(crate) const CERTIFICATE_EXPIRY: &str = "shipshape_tls_certificate_expiry_timestamp_seconds";

/// Every name the jobs write.
#[allow(dead_code, reason = "read by tests/monitoring.rs, which compiles this file")]
pub(crate) const NAMES: &[&str] = &[
    BACKUP_LAST_SUCCESS,
    BACKUP_LAST_FAILURE,
    RESTORE_DRILL_LAST_SUCCESS,
    RESTORE_DRILL_LAST_FAILURE,
    RESTORED_BACKUP_TAKEN,
    CERTIFICATE_EXPIRY,
];

/// Sets `name{labels}` to `value` in the job's file, keeping the file's other samples.
pub(crate) fn set(dir: &Path, job: &str, name: &str, labels: &str, value: f64) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join(format!("shipshape_{job}.prom"));
    let mut samples: BTreeMap<String, String> = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(series, value)| (series.to_owned(), value.to_owned()))
        .collect();
    let series = if labels.is_empty() { name.to_owned() } else { format!("{name}{{{labels}}}") };
    samples.insert(series, value.to_string());
    let mut text = String::new();
    let mut typed = Vec::new();
    for (series, value) in &samples {
        let metric = series.split('{').next().unwrap_or(series);
        if !typed.contains(&metric) {
            text.push_str(&format!("# TYPE {metric} gauge\n"));
            typed.push(metric);
        }
        text.push_str(&format!("{series} {value}\n"));
    }
    let partial = file.with_extension("prom.partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, &file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_replaced_and_the_others_kept() {
        let dir = std::env::temp_dir().join(format!("textfile-{}", std::process::id()));
        set(&dir, "backup", BACKUP_LAST_SUCCESS, "", 10.0).expect("write");
        set(&dir, "backup", BACKUP_LAST_FAILURE, "", 20.0).expect("write");
        set(&dir, "backup", BACKUP_LAST_SUCCESS, "", 30.0).expect("write");
        let text = std::fs::read_to_string(dir.join("shipshape_backup.prom")).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            text,
            format!(
                "# TYPE {BACKUP_LAST_FAILURE} gauge\n{BACKUP_LAST_FAILURE} 20\n\
                 # TYPE {BACKUP_LAST_SUCCESS} gauge\n{BACKUP_LAST_SUCCESS} 30\n"
            )
        );
    }
}
