//! The PromQL in deploy/monitoring: every expression of the alert rules and of the dashboard. Only serde
//! crates, so that `tests/monitoring.rs` compiles this file too.

/// Every expression: `(where, expression)`, the alert's or the panel's name first.
pub(crate) fn expressions(rules_yaml: &str, dashboard_json: &str) -> Result<Vec<(String, String)>, String> {
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(rules_yaml).map_err(|error| error.to_string())?;
    let dashboard: serde_json::Value = serde_json::from_str(dashboard_json).map_err(|error| error.to_string())?;
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().into_iter().flatten() {
        for rule in group["rules"].as_sequence().into_iter().flatten() {
            let name = rule["alert"].as_str().or_else(|| rule["record"].as_str()).unwrap_or("?");
            let expr = rule["expr"].as_str().ok_or_else(|| format!("rule {name} has no expr"))?;
            out.push((format!("rule {name}"), expr.to_owned()));
        }
    }
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().ok_or_else(|| format!("panel {title:?} has a target without expr"))?;
            out.push((format!("panel {title:?}"), expr.to_owned()));
        }
    }
    Ok(out)
}
