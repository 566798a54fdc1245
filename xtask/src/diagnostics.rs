//! Reading tool output as it streams: compiler diagnostics and test panics become annotations.

use std::io::{BufRead, BufReader};

use anyhow::{Context, Result};

/// A problem at a place in the source, as GitHub shows it on the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Annotation {
    pub(crate) file: String,
    pub(crate) line: u32,
    pub(crate) title: String,
    pub(crate) message: String,
}

/// Runs `expression`, handing each line of its stdout to `on_line`; true when it exited 0.
pub(crate) fn stream(expression: &duct::Expression, mut on_line: impl FnMut(&str)) -> Result<bool> {
    let reader = expression.unchecked().reader().context("starting the command")?;
    let mut lines = BufReader::new(&reader);
    let mut line = String::new();
    while lines.read_line(&mut line).context("reading the command's output")? > 0 {
        on_line(line.trim_end_matches(['\r', '\n']));
        line.clear();
    }
    let output = reader.try_wait()?.context("the command's output ended before it did")?;
    Ok(output.status.success())
}

/// A rustc/clippy diagnostic from `cargo --message-format=json`.
pub(crate) struct CompilerMessage {
    pub(crate) rendered: String,
    pub(crate) annotation: Option<Annotation>,
    /// A rustc error with an error code (`E0425`), not a lint: the code does not compile.
    pub(crate) compile_error: bool,
}

/// Parses one line of cargo's JSON output; `None` for anything but a compiler message.
pub(crate) fn compiler_message(line: &str) -> Option<CompilerMessage> {
    let record: serde_json::Value = serde_json::from_str(line).ok()?;
    if record.get("reason")?.as_str()? != "compiler-message" {
        return None;
    }
    let message = record.get("message")?;
    let rendered = message.get("rendered")?.as_str()?.to_owned();
    let compile_error = message
        .pointer("/code/code")
        .and_then(serde_json::Value::as_str)
        .and_then(|code| code.strip_prefix('E'))
        .is_some_and(|number| !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()));
    let primary = message
        .get("spans")?
        .as_array()?
        .iter()
        .find(|span| span.get("is_primary").and_then(serde_json::Value::as_bool) == Some(true));
    let annotation = primary.and_then(|span| {
        let code = message.pointer("/code/code").and_then(serde_json::Value::as_str);
        let level = message.get("level")?.as_str()?;
        Some(Annotation {
            file: span.get("file_name")?.as_str()?.to_owned(),
            line: u32::try_from(span.get("line_start")?.as_u64()?).ok()?,
            title: code.map_or_else(|| level.to_owned(), |code| format!("{level}: {code}")),
            message: message.get("message")?.as_str()?.to_owned(),
        })
    });
    Some(CompilerMessage { rendered, annotation, compile_error })
}

/// Follows test output and turns each `thread '…' panicked at FILE:LINE:COL:` and the message
/// under it into an annotation.
#[derive(Debug, Default)]
pub(crate) struct Panics {
    open: Option<Annotation>,
}

impl Panics {
    /// Feeds one line; returns an annotation when a panic message is complete.
    pub(crate) fn feed(&mut self, line: &str) -> Option<Annotation> {
        if let Some(start) = parse_panic_header(line) {
            return self.open.replace(start);
        }
        let open = self.open.as_mut()?;
        let ends = line.trim().is_empty() || line.starts_with("note:") || line.starts_with("stack backtrace:");
        if ends {
            return self.open.take();
        }
        if !open.message.is_empty() {
            open.message.push('\n');
        }
        open.message.push_str(line);
        None
    }

    /// The panic still open when the output ended.
    pub(crate) fn finish(&mut self) -> Option<Annotation> {
        self.open.take()
    }
}

/// Adds up the test runner's summaries: nextest's `N tests run: P passed, F failed, …` and libtest's
/// `test result: ok. P passed; F failed; …` (one per test binary). nextest repeats each failing test's
/// own libtest summary in its output, so once its summary arrives it alone counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TestCounts {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
    from_nextest: bool,
}

impl TestCounts {
    pub(crate) fn feed(&mut self, line: &str) {
        let summary =
            if let Some((_, rest)) = line.split_once(" tests run: ").or_else(|| line.split_once(" test run: ")) {
                if !self.from_nextest {
                    *self = Self { from_nextest: true, ..Self::default() };
                }
                rest
            } else if let Some(rest) = line.trim_start().strip_prefix("test result: ") {
                if self.from_nextest {
                    return;
                }
                rest
            } else {
                return;
            };
        // "171 passed (1 slow)": the number is the word before `word`, whatever follows it.
        let number_before = |word: &str| {
            summary
                .split([',', ';', '.'])
                .find_map(|part| {
                    let words: Vec<&str> = part.split_whitespace().collect();
                    words.windows(2).find(|pair| pair[1] == word).and_then(|pair| pair[0].parse::<u64>().ok())
                })
                .unwrap_or(0)
        };
        self.passed += number_before("passed");
        self.failed += number_before("failed");
    }
}

fn parse_panic_header(line: &str) -> Option<Annotation> {
    let rest = line.trim_start().strip_prefix("thread '")?;
    let (thread, rest) = rest.split_once("' panicked at ")?;
    let location = rest.strip_suffix(':')?;
    let mut parts = location.rsplitn(3, ':');
    let _column = parts.next()?;
    let line_number = parts.next()?.parse().ok()?;
    let file = parts.next()?.to_owned();
    Some(Annotation { file, line: line_number, title: format!("test failed: {thread}"), message: String::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clippy_warning_becomes_an_annotation() {
        let line = r#"{"reason":"compiler-message","message":{"rendered":"warning: unused\n","level":"warning","message":"unused variable: `x`","code":{"code":"unused_variables"},"spans":[{"file_name":"app/src/lib.rs","line_start":7,"is_primary":true}]}}"#;
        let message = compiler_message(line).expect("a compiler message");
        assert_eq!(message.rendered, "warning: unused\n");
        let annotation = message.annotation.expect("has a primary span");
        assert_eq!(annotation.file, "app/src/lib.rs");
        assert_eq!(annotation.line, 7);
        assert_eq!(annotation.title, "warning: unused_variables");
        assert_eq!(annotation.message, "unused variable: `x`");
    }

    #[test]
    fn a_rustc_error_code_means_the_code_does_not_compile_and_a_lint_does_not() {
        let lint = r#"{"reason":"compiler-message","message":{"rendered":"error: unused\n","level":"error","message":"m","code":{"code":"unused_variables"},"spans":[]}}"#;
        assert!(!compiler_message(lint).expect("a message").compile_error);
        let error = r#"{"reason":"compiler-message","message":{"rendered":"error[E0425]: x\n","level":"error","message":"cannot find value `x`","code":{"code":"E0425"},"spans":[]}}"#;
        assert!(compiler_message(error).expect("a message").compile_error);
    }

    #[test]
    fn other_cargo_records_are_not_messages() {
        assert!(compiler_message(r#"{"reason":"compiler-artifact"}"#).is_none());
        assert!(compiler_message("   Compiling app v0.1.0").is_none());
    }

    #[test]
    fn a_panic_and_its_message_become_one_annotation() {
        let mut panics = Panics::default();
        assert_eq!(panics.feed("running 1 test"), None);
        assert_eq!(panics.feed("thread 'readyz_fails' panicked at app/tests/health.rs:42:5:"), None);
        assert_eq!(panics.feed("assertion `left == right` failed"), None);
        assert_eq!(panics.feed("  left: 200"), None);
        let annotation = panics.feed("note: run with `RUST_BACKTRACE=1`").expect("the panic ended");
        assert_eq!(annotation.file, "app/tests/health.rs");
        assert_eq!(annotation.line, 42);
        assert_eq!(annotation.title, "test failed: readyz_fails");
        assert_eq!(annotation.message, "assertion `left == right` failed\n  left: 200");
        assert_eq!(panics.finish(), None);
    }

    #[test]
    fn a_panic_cut_off_by_the_end_of_output_is_still_reported() {
        let mut panics = Panics::default();
        panics.feed("thread 'main' panicked at src/x.rs:1:2:");
        panics.feed("boom");
        assert_eq!(panics.finish().map(|annotation| annotation.message), Some("boom".to_owned()));
    }

    #[test]
    fn a_second_panic_closes_the_first() {
        let mut panics = Panics::default();
        panics.feed("thread 'a' panicked at a.rs:1:1:");
        let first = panics.feed("thread 'b' panicked at b.rs:2:1:").expect("first closed");
        assert_eq!(first.file, "a.rs");
    }

    #[test]
    fn test_counts_add_up_nextest_and_libtest_summaries() {
        let mut counts = TestCounts::default();
        counts.feed("     Summary [   9.236s] 145 tests run: 144 passed, 1 failed, 0 skipped");
        assert_eq!((counts.passed, counts.failed), (144, 1));
        let mut counts = TestCounts::default();
        counts.feed("     Summary [  55.414s] 171 tests run: 171 passed (1 slow), 0 skipped");
        assert_eq!((counts.passed, counts.failed), (171, 0));
        let mut counts = TestCounts::default();
        counts.feed("test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        counts.feed("test result: FAILED. 2 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out");
        counts.feed("running 4 tests");
        assert_eq!((counts.passed, counts.failed), (5, 2));
    }

    #[test]
    fn a_failing_tests_own_summary_inside_nextest_output_is_not_counted_again() {
        let mut counts = TestCounts::default();
        counts.feed("    test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 2 filtered out");
        counts.feed("     Summary [ 383.445s] 354 tests run: 352 passed (7 slow), 2 failed, 0 skipped");
        counts.feed("    test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 2 filtered out");
        assert_eq!((counts.passed, counts.failed), (352, 2));
    }

    #[test]
    fn streams_lines_and_reports_the_exit_status() {
        let mut seen = Vec::new();
        let ok = stream(&duct::cmd!("sh", "-c", "echo one; echo two; exit 3"), |line| seen.push(line.to_owned()))
            .expect("sh runs");
        assert!(!ok);
        assert_eq!(seen, ["one", "two"]);
    }
}
