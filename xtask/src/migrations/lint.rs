//! squawk on the new migrations: lock-taking and destructive DDL fails with the file, the line, the rule
//! and the safe alternative. The only opt-out is squawk's own comment above one statement
//! (`-- squawk-ignore RULE`) with a `-- reason:` line right above it, so every exception is reviewed
//! in the diff that adds it.

use anyhow::{Context as _, Result, bail};
use camino::Utf8Path;
use serde::Deserialize;

use crate::diagnostics::Annotation;
use crate::project;

/// Rules left out, each with why it does not apply here.
const EXCLUDED: &[(&str, &str)] = &[
    ("require-lock-timeout", "`app migrate` sets lock_timeout (MIGRATION_LOCK_TIMEOUT) on its connection"),
    (
        "require-statement-timeout",
        "`app migrate` lifts the statement timeout: a migration holding its locks may run long",
    ),
];

/// What to write instead, per rule; rules not listed fall back to squawk's own help.
const SAFE_ALTERNATIVES: &[(&str, &str)] = &[
    (
        "ban-drop-column",
        "ship a release that no longer reads the column first, then drop it in a later migration (docs/migrations.md, contract)",
    ),
    (
        "renaming-column",
        "add the new column, write both, backfill, read the new one; drop the old one in a later deploy (docs/migrations.md, the three-deploy rename)",
    ),
    (
        "renaming-table",
        "create the new table (or a view under the new name), move readers over, drop the old name in a later deploy",
    ),
    ("changing-column-type", "add a column of the new type, backfill it, switch reads, drop the old column later"),
    (
        "require-concurrent-index-creation",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS, alone in a migration whose first line is `-- no-transaction`",
    ),
    (
        "ban-concurrent-index-creation-in-transaction",
        "make `-- no-transaction` the migration's first line, with the CONCURRENTLY statement alone in it",
    ),
    (
        "adding-not-nullable-field",
        "add the column nullable (or with a constant default), backfill, then add a CHECK (col IS NOT NULL) NOT VALID and validate it later",
    ),
    (
        "setting-not-nullable-field",
        "add a CHECK (col IS NOT NULL) NOT VALID, then VALIDATE CONSTRAINT in a later migration",
    ),
    ("constraint-missing-not-valid", "add the constraint NOT VALID, then VALIDATE CONSTRAINT in a later migration"),
    ("adding-foreign-key-constraint", "add the foreign key NOT VALID, then VALIDATE CONSTRAINT in a later migration"),
    (
        "disallowed-unique-constraint",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT … UNIQUE USING INDEX",
    ),
    (
        "adding-field-with-default",
        "use a constant default; for a volatile one add the column nullable and backfill in batches",
    ),
    ("ban-drop-table", "ship a release that no longer uses the table first, then drop it in a later migration"),
    ("ban-drop-database", "never drop a database from a migration"),
    ("prefer-robust-stmts", "IF [NOT] EXISTS, so that a migration that stopped half-way can run again"),
];

/// One finding, as squawk's JSON reporter gives it (lines and columns from 0).
#[derive(Debug, Deserialize)]
struct Finding {
    line: u32,
    column: u32,
    message: String,
    help: Option<String>,
    rule_name: String,
}

/// A problem in one file, ready to print.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) file: String,
    pub(crate) line: u32,
    pub(crate) rule: String,
    pub(crate) message: String,
    pub(crate) safe: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}: {}\n    safe: {}", self.file, self.line, self.rule, self.message, self.safe)
    }
}

impl Violation {
    pub(crate) fn annotation(&self) -> Annotation {
        Annotation {
            file: self.file.clone(),
            line: self.line,
            title: format!("migration: {}", self.rule),
            message: format!("{} Safe: {}", self.message, self.safe),
        }
    }
}

/// Lints one migration (`file` relative to the workspace root).
pub(crate) fn lint(file: &Utf8Path) -> Result<Vec<Violation>> {
    let text = std::fs::read_to_string(project::root().join(file)).with_context(|| format!("reading {file}"))?;
    let mut violations = opt_outs_without_reason(file.as_str(), &text);
    violations.extend(squawk(file, in_transaction(&text))?);
    violations.sort_by_key(|violation| violation.line);
    Ok(violations)
}

/// sqlx runs a migration in a transaction unless its first line is `-- no-transaction`.
fn in_transaction(text: &str) -> bool {
    text.lines().next().is_none_or(|line| line.trim() != "-- no-transaction")
}

fn squawk(file: &Utf8Path, in_transaction: bool) -> Result<Vec<Violation>> {
    let excluded: Vec<&str> = EXCLUDED.iter().map(|(rule, _)| *rule).collect();
    let mut command = crate::tools::SQUAWK.command()?;
    command.current_dir(project::root()).args(["--reporter", "json", "--exclude", &excluded.join(",")]);
    command.arg(if in_transaction { "--assume-in-transaction" } else { "--no-assume-in-transaction" });
    let output = command.arg(file.as_str()).output().context("running squawk (install it: `cargo xtask setup`)")?;
    let findings: Vec<Finding> = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "squawk gave no report on {file} ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })?;
    if !output.status.success() && findings.is_empty() {
        bail!("squawk failed on {file} ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(violations(file.as_str(), findings))
}

fn violations(file: &str, findings: Vec<Finding>) -> Vec<Violation> {
    let mut out = Vec::new();
    // A parse error cascades into more; the first says what is wrong.
    if let Some(error) = findings.iter().find(|finding| finding.rule_name == "syntax-error") {
        out.push(Violation {
            file: file.to_owned(),
            line: error.line + 1,
            rule: "syntax-error".to_owned(),
            message: format!("not valid SQL: {} (column {})", error.message, error.column + 1),
            safe: format!(
                "fix the statement; `psql --file {file}` against a scratch database shows PostgreSQL's own error"
            ),
        });
    }
    for finding in findings.into_iter().filter(|finding| finding.rule_name != "syntax-error") {
        out.push(Violation {
            file: file.to_owned(),
            line: finding.line + 1,
            safe: safe_alternative(&finding.rule_name, finding.help.as_deref()),
            rule: finding.rule_name,
            message: finding.message,
        });
    }
    out
}

fn safe_alternative(rule: &str, help: Option<&str>) -> String {
    match (SAFE_ALTERNATIVES.iter().find(|(name, _)| *name == rule), help) {
        (Some((_, safe)), _) => (*safe).to_owned(),
        (None, Some(help)) => help.to_owned(),
        (None, None) => format!("see https://squawkhq.com/docs/{rule}"),
    }
}

/// Every `squawk-ignore` needs a `-- reason: …` line right above it, names the rules it silences,
/// and covers one statement (no `squawk-ignore-file`).
fn opt_outs_without_reason(file: &str, text: &str) -> Vec<Violation> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some((_, after)) = line.split_once("squawk-ignore") else {
            continue;
        };
        let problem = if after.starts_with("-file") {
            Some("a whole file cannot opt out: put `-- squawk-ignore RULE` above the one statement")
        } else if after.trim().is_empty() {
            Some("the opt-out names no rule: write `-- squawk-ignore RULE`")
        } else if !index.checked_sub(1).is_some_and(|above| has_reason(lines[above])) {
            Some("an opt-out needs a `-- reason: why this is safe now` line right above it (at least 10 characters)")
        } else {
            None
        };
        if let Some(problem) = problem {
            out.push(Violation {
                file: file.to_owned(),
                line: u32::try_from(index + 1).unwrap_or(u32::MAX),
                rule: "opt-out".to_owned(),
                message: problem.to_owned(),
                safe: "see docs/migrations.md, opting out of one rule".to_owned(),
            });
        }
    }
    out
}

fn has_reason(line: &str) -> bool {
    line.trim_start()
        .strip_prefix("--")
        .and_then(|comment| comment.trim_start().strip_prefix("reason:"))
        .is_some_and(|reason| reason.trim().chars().count() >= 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(violations: &[Violation]) -> Vec<(u32, &str)> {
        violations.iter().map(|violation| (violation.line, violation.rule.as_str())).collect()
    }

    #[test]
    fn an_opt_out_needs_a_reason_a_rule_and_one_statement() {
        let reasoned = "-- reason: notes.body is read by no release since 2026-11\n-- squawk-ignore ban-drop-column\nALTER TABLE notes DROP COLUMN body;\n";
        assert!(opt_outs_without_reason("m.sql", reasoned).is_empty());
        let bare = "SELECT 1;\n-- squawk-ignore ban-drop-column\nALTER TABLE notes DROP COLUMN body;\n";
        assert_eq!(rules(&opt_outs_without_reason("m.sql", bare)), [(2, "opt-out")]);
        let short = "-- reason: ok\n-- squawk-ignore ban-drop-column\n";
        assert_eq!(rules(&opt_outs_without_reason("m.sql", short)), [(2, "opt-out")]);
        let whole = "-- reason: the whole file is a contract step\n-- squawk-ignore-file\n";
        assert!(opt_outs_without_reason("m.sql", whole)[0].message.contains("whole file"));
        let unnamed = "-- reason: the whole file is a contract step\n-- squawk-ignore\n";
        assert!(opt_outs_without_reason("m.sql", unnamed)[0].message.contains("names no rule"));
    }

    #[test]
    fn findings_become_one_based_lines_with_a_safe_alternative() {
        let findings = vec![
            Finding {
                line: 2,
                column: 18,
                message: "Dropping a column may break existing clients.".into(),
                help: None,
                rule_name: "ban-drop-column".into(),
            },
            Finding {
                line: 0,
                column: 0,
                message: "x".into(),
                help: Some("do y".into()),
                rule_name: "new-rule".into(),
            },
        ];
        let out = violations("app/migrations/1_x.sql", findings);
        assert_eq!(rules(&out), [(3, "ban-drop-column"), (1, "new-rule")]);
        assert!(out[0].to_string().starts_with("app/migrations/1_x.sql:3: ban-drop-column: Dropping"), "{}", out[0]);
        assert!(out[0].safe.contains("later migration"));
        assert_eq!(out[1].safe, "do y");
        assert_eq!(safe_alternative("unknown", None), "see https://squawkhq.com/docs/unknown");
    }

    #[test]
    fn syntax_errors_collapse_into_one_line() {
        let error = |line, message: &str| Finding {
            line,
            column: 0,
            message: message.into(),
            help: None,
            rule_name: "syntax-error".into(),
        };
        let out =
            violations("m.sql", vec![error(0, "expected command, found IDENT"), error(0, "Missing select clause")]);
        assert_eq!(rules(&out), [(1, "syntax-error")]);
        assert!(out[0].message.starts_with("not valid SQL: expected command"), "{}", out[0]);
    }

    #[test]
    fn only_a_leading_no_transaction_line_leaves_the_transaction() {
        assert!(in_transaction("ALTER TABLE t ADD COLUMN c int;\n"));
        assert!(!in_transaction("-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);\n"));
        assert!(in_transaction("SELECT 1;\n-- no-transaction\n"));
    }
}
