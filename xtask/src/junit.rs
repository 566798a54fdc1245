//! nextest's JUnit report of the `test` step (`target/nextest/ci/junit.xml`, the `ci` profile of
//! `.config/nextest.toml`): where it is, and the slowest tests in it.

use camino::Utf8PathBuf;

use crate::project;

/// How many of the slowest tests the summary lists.
pub(crate) const SLOWEST: usize = 10;

/// Where nextest writes the report (its store is pinned to `target/nextest` in `.config/nextest.toml`,
/// so coverage runs, which build elsewhere, write it there too).
pub(crate) fn path() -> Utf8PathBuf {
    project::root().join("target/nextest/ci/junit.xml")
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TestTime {
    /// `binary::test`, as nextest names it.
    pub(crate) name: String,
    pub(crate) seconds: f64,
}

/// The `count` slowest test cases of a JUnit document, slowest first.
pub(crate) fn slowest(xml: &str, count: usize) -> Vec<TestTime> {
    let mut times: Vec<TestTime> = xml
        .split("<testcase ")
        .skip(1)
        .filter_map(|case| {
            let tag = &case[..case.find('>')?];
            let seconds = attribute(tag, "time")?.parse().ok()?;
            let name = attribute(tag, "name")?;
            let name = match attribute(tag, "classname") {
                Some(class) => format!("{class}::{name}"),
                None => name,
            };
            Some(TestTime { name, seconds })
        })
        .collect();
    times.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    times.truncate(count);
    times
}

/// The unescaped value of `name="…"` in a start tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.match_indices(&format!("{name}=\"")).find(|(at, _)| *at == 0 || tag[..*at].ends_with(' '))?.0;
    let value = &tag[start + name.len() + 2..];
    let value = &value[..value.find('"')?];
    Some(
        value
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// The slowest tests of the last `test` step, when its report exists.
pub(crate) fn read_slowest() -> Vec<TestTime> {
    std::fs::read_to_string(path()).map(|xml| slowest(&xml, SLOWEST)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="3" failures="1" errors="0" time="9.5">
  <testsuite name="app::notes" tests="2" disabled="0" errors="0" failures="1">
    <testcase name="lists_&lt;own&gt;_notes" classname="app::notes" timestamp="2026-12-01T15:00:00Z" time="1.250">
    </testcase>
    <testcase name="pages" classname="app::notes" time="7.5"><failure message="boom"/></testcase>
  </testsuite>
  <testsuite name="xtask" tests="1">
    <testcase classname="xtask" name="quick" time="0.010"/>
  </testsuite>
</testsuites>"#;

    #[test]
    fn the_slowest_come_first_with_their_binary_and_unescaped_names() {
        let slowest = slowest(REPORT, 2);
        assert_eq!(
            slowest,
            [
                TestTime { name: "app::notes::pages".into(), seconds: 7.5 },
                TestTime { name: "app::notes::lists_<own>_notes".into(), seconds: 1.25 },
            ]
        );
        assert_eq!(super::slowest(REPORT, 10).len(), 3);
        assert!(super::slowest("not xml", 10).is_empty());
    }

    #[test]
    fn an_attribute_is_not_confused_with_a_longer_name() {
        assert_eq!(attribute(r#"classname="c" name="n""#, "name").as_deref(), Some("n"));
        assert_eq!(attribute(r#"timestamp="t" time="2""#, "time").as_deref(), Some("2"));
    }
}
