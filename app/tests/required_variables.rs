//! The list `cargo xtask secrets check` checks every target against is the service's real contract: a
//! production environment of exactly those variables passes `check --deploy`, and without any one of
//! them the configuration is refused or the deployment checks fail.

use std::collections::HashMap;

use app::checks::{Probe, Report};
use app::config::Config;
use app::contract::REQUIRED_WHEN_DEPLOYED;

const PROBE_OK: Probe = Probe { headers_mounted: true, csrf_enforced: true };

fn value(name: &str) -> &'static str {
    match name {
        "APP_ENV" => "production",
        "DATABASE_URL" => "postgres://app@db/app?sslmode=verify-full",
        "SECRET_KEY" => "Zq8x1Lr4Vt7Yb2Nc5Md9Kf3Hg6Jw0Pa8Se1Ru4Ti7Oy2Uz5Xv9Qm3",
        "ALLOWED_HOSTS" => "app.example.com",
        "TRUSTED_PROXIES" => "10.0.0.0/8",
        other => panic!("{other} is required but this test has no value for it: add one"),
    }
}

/// Whether a service with `vars` (and HSTS preload opted out of, which is a choice, not a requirement)
/// would start deployed.
fn would_serve(vars: &HashMap<&str, &str>) -> bool {
    let mut vars = vars.clone();
    vars.insert("SILENCED_CHECKS", "security.W021");
    let Ok(config) = Config::from_lookup(&|name| vars.get(name).map(|value| (*value).to_owned())) else {
        return false;
    };
    config.environment.is_deployed() && Report::new(&config, &[], PROBE_OK).passed()
}

#[test]
fn the_required_variables_are_enough_to_serve() {
    let vars: HashMap<&str, &str> =
        REQUIRED_WHEN_DEPLOYED.iter().map(|required| (required.name, value(required.name))).collect();
    assert!(would_serve(&vars));
}

#[test]
fn without_any_one_of_them_the_service_would_not_serve() {
    for missing in REQUIRED_WHEN_DEPLOYED {
        let vars: HashMap<&str, &str> = REQUIRED_WHEN_DEPLOYED
            .iter()
            .filter(|required| required.name != missing.name)
            .map(|required| (required.name, value(required.name)))
            .collect();
        assert!(!would_serve(&vars), "{} is listed as required, yet the service serves without it", missing.name);
    }
}

#[test]
fn secrets_are_the_variables_read_from_files_too() {
    let dir = std::env::temp_dir().join(format!("contract-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut vars: HashMap<String, String> = HashMap::new();
    for required in REQUIRED_WHEN_DEPLOYED {
        if required.secret {
            let file = dir.join(required.name);
            std::fs::write(&file, value(required.name)).expect("write");
            vars.insert(format!("{}_FILE", required.name), file.display().to_string());
        } else {
            vars.insert(required.name.to_owned(), value(required.name).to_owned());
        }
    }
    let config = Config::from_lookup(&|name| vars.get(name).cloned());
    let _ = std::fs::remove_dir_all(&dir);
    let config = config.expect("every secret read from its file");
    assert!(Report::new(&config, &[], PROBE_OK).findings.iter().all(|finding| finding.id == "security.W021"));
}
