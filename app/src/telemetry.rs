//! Logs: one JSON object per line in deployed environments, a readable line in development. Every
//! line has a UTC `ts`, the level, and the fields of the spans it happened in (so the request's
//! `request_id`, and `user_id` once known). Redaction happens here, whatever the caller logged:
//! sensitive field names (authorization, cookie, password, token, secret…) and the values of the
//! configured secrets are blanked, and CR/LF cannot forge lines.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::callsite::Identifier;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, LogFormat};
use crate::log_writer::{self, FlushGuard};

pub const REDACTED: &str = "[redacted]";
pub const SENSITIVE: &[&str] =
    &["authorization", "cookie", "password", "passwd", "secret", "token", "api_key", "apikey", "credential"];

pub type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// A field's value as recorded. Text lives in the buffer of the `Fields` that holds it, so that
/// recording allocates nothing once that buffer has grown.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// A range of `Fields::text`.
    Text(usize, usize),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// The fields of a span or of a line, in the order they were recorded, redacted as they were recorded.
/// Names are static: only the text is owned.
#[derive(Debug, Default)]
struct Fields {
    entries: Vec<(&'static str, Slot)>,
    text: String,
}

impl Fields {
    fn clear(&mut self) {
        self.entries.clear();
        self.text.clear();
    }

    fn text(&self, slot: Slot) -> Option<&str> {
        match slot {
            Slot::Text(start, end) => self.text.get(start..end),
            _ => None,
        }
    }

    fn push_text(&mut self, name: &'static str, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.entries.push((name, Slot::Text(start, self.text.len())));
    }

    /// Appends `other`'s entries (a span's, to a line).
    fn extend(&mut self, other: &Self) {
        for &(name, slot) in &other.entries {
            match other.text(slot) {
                Some(text) => self.push_text(name, text),
                None => self.entries.push((name, slot)),
            }
        }
    }

    /// An entry, whose value replaces the one an earlier entry of the same name had (a span's record).
    fn set(&mut self, name: &'static str, slot: Slot) {
        match self.entries.iter_mut().find(|(existing, _)| *existing == name) {
            Some(entry) => entry.1 = slot,
            None => self.entries.push((name, slot)),
        }
    }

    /// The entries a line shows: of several with the same name, the last (an event's field over its span's).
    fn shown(&self) -> impl Iterator<Item = (&'static str, Slot)> + '_ {
        let entries = &self.entries;
        entries
            .iter()
            .enumerate()
            .filter(|&(index, (name, _))| !entries[index + 1..].iter().any(|(later, _)| later == name))
            .map(|(_, entry)| *entry)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.entries.iter().rev().find(|(key, _)| *key == name).and_then(|&(_, slot)| self.text(slot))
    }
}

/// Records fields into `fields`, redacting as it goes: whatever the caller logged, a sensitive name's
/// value is blanked, and a configured secret inside a text is replaced.
struct Recorder<'a> {
    fields: &'a mut Fields,
    secrets: &'a [String],
    /// Spans replace a re-recorded field; a line keeps every entry, in order.
    replace: bool,
}

impl Recorder<'_> {
    fn put(&mut self, field: &Field, slot: Slot) {
        let name = field_name(field);
        if is_sensitive_field(field) {
            return self.put_text(field, |text| text.push_str(REDACTED));
        }
        if self.replace {
            self.fields.set(name, slot);
        } else {
            self.fields.entries.push((name, slot));
        }
    }

    fn put_text(&mut self, field: &Field, write: impl FnOnce(&mut String)) {
        let name = field_name(field);
        let text = &mut self.fields.text;
        let start = text.len();
        if is_sensitive_field(field) {
            text.push_str(REDACTED);
        } else {
            write(text);
            redact_secrets(text, start, self.secrets);
        }
        let slot = Slot::Text(start, text.len());
        if self.replace {
            self.fields.set(name, slot);
        } else {
            self.fields.entries.push((name, slot));
        }
    }
}

/// Replaces each secret in `text[start..]`.
fn redact_secrets(text: &mut String, start: usize, secrets: &[String]) {
    for secret in secrets {
        let value = &text[start..];
        // Most values (methods, routes, ids) are shorter than any secret: no search needed.
        if value.len() >= secret.len() && value.contains(secret.as_str()) {
            let redacted = value.replace(secret.as_str(), REDACTED);
            text.truncate(start);
            text.push_str(&redacted);
        }
    }
}

impl Visit for Recorder<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put_text(field, |text| text.push_str(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Slot::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Slot::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Slot::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Slot::Bool(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put_text(field, |text| {
            let _ = write!(text, "{value:?}");
        });
    }
}

/// A field's name, without the `r#` of a raw identifier.
fn field_name(field: &Field) -> &'static str {
    let name = field.name();
    name.strip_prefix("r#").unwrap_or(name)
}

/// Which bytes start a sensitive word, in either case.
const STARTS_A_WORD: [bool; 256] = {
    let mut table = [false; 256];
    let mut index = 0;
    while index < SENSITIVE.len() {
        let first = SENSITIVE[index].as_bytes()[0];
        table[first as usize] = true;
        table[first.to_ascii_uppercase() as usize] = true;
        index += 1;
    }
    table
};

/// Whether a field name holds one of the sensitive words, in any case (without allocating: it runs for
/// every field of every line). Words are compared only where the name has one's first letter.
fn is_sensitive(key: &str) -> bool {
    let key = key.as_bytes();
    key.iter().enumerate().filter(|&(_, &byte)| STARTS_A_WORD[usize::from(byte)]).any(|(start, byte)| {
        let first = byte.to_ascii_lowercase();
        SENSITIVE.iter().any(|word| {
            let word = word.as_bytes();
            word[0] == first && key[start..].get(..word.len()).is_some_and(|window| window.eq_ignore_ascii_case(word))
        })
    })
}

/// How many callsites each thread remembers the verdicts of.
const VERDICT_SLOTS: usize = 8;

thread_local! {
    /// Per callsite, which of its fields (by index) have been judged, and which of those are sensitive.
    /// Names are static per callsite, and the same few callsites log on every request (the request's
    /// span, the access line): judged once, not per line.
    static VERDICTS: std::cell::RefCell<Vec<(Identifier, u64, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `is_sensitive` of the field's name, remembered.
fn is_sensitive_field(field: &Field) -> bool {
    let Some(bit) = 1_u64.checked_shl(u32::try_from(field.index()).unwrap_or(u32::MAX)) else {
        return is_sensitive(field_name(field));
    };
    VERDICTS.with_borrow_mut(|verdicts| {
        let callsite = field.callsite();
        let slot = match verdicts.iter().position(|(known, ..)| *known == callsite) {
            Some(slot) => slot,
            None => {
                if verdicts.len() == VERDICT_SLOTS {
                    verdicts.remove(0);
                }
                verdicts.push((callsite, 0, 0));
                verdicts.len() - 1
            }
        };
        let (_, judged, sensitive) = &mut verdicts[slot];
        if *judged & bit == 0 {
            *judged |= bit;
            if is_sensitive(field_name(field)) {
                *sensitive |= bit;
            }
        }
        *sensitive & bit != 0
    })
}

fn level_name(level: tracing::Level) -> &'static str {
    match level {
        tracing::Level::TRACE => "trace",
        tracing::Level::DEBUG => "debug",
        tracing::Level::INFO => "info",
        tracing::Level::WARN => "warn",
        tracing::Level::ERROR => "error",
    }
}

/// Writes each event as one line to `sink`.
pub struct LogLayer {
    format: LogFormat,
    secrets: Vec<String>,
    sink: Sink,
}

impl std::fmt::Debug for LogLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLayer")
            .field("format", &self.format)
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

/// A JSON string. Most texts need no escaping and are copied as they are; JSON escapes line breaks,
/// so one event is always one line.
fn write_json_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// A value as JSON.
fn write_json(out: &mut Vec<u8>, line: &Fields, slot: Slot) {
    let _ = match slot {
        Slot::Text(..) => {
            write_json_str(out, line.text(slot).unwrap_or_default());
            Ok(())
        }
        Slot::I64(value) => serde_json::to_writer(&mut *out, &value),
        Slot::U64(value) => serde_json::to_writer(&mut *out, &value),
        // Not a finite number: `null`, as JSON has no other way to say it.
        Slot::F64(value) => serde_json::to_writer(&mut *out, &value),
        Slot::Bool(value) => serde_json::to_writer(&mut *out, &value),
    };
}

impl LogLayer {
    pub fn new(format: LogFormat, secrets: Vec<String>, sink: Sink) -> Self {
        Self { format, secrets, sink }
    }

    /// One line, without its newline: JSON with the keys in the order recorded, or the readable form.
    fn render(&self, line: &Fields, out: &mut Vec<u8>) {
        match self.format {
            LogFormat::Json => {
                out.push(b'{');
                for (index, (key, slot)) in line.shown().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    write_json_str(out, key);
                    out.push(b':');
                    write_json(out, line, slot);
                }
                out.push(b'}');
            }
            LogFormat::Pretty => {
                let text = |key: &str| line.get(key).unwrap_or_default();
                let mut pretty = format!(
                    "{} {:>5} {}: {}",
                    text("ts"),
                    text("level").to_ascii_uppercase(),
                    text("target"),
                    text("message")
                );
                for (key, slot) in
                    line.shown().filter(|(key, _)| !matches!(*key, "ts" | "level" | "target" | "message"))
                {
                    let _ = match slot {
                        Slot::Text(..) => write!(pretty, " {key}={}", line.text(slot).unwrap_or_default()),
                        Slot::I64(value) => write!(pretty, " {key}={value}"),
                        Slot::U64(value) => write!(pretty, " {key}={value}"),
                        Slot::F64(value) => write!(pretty, " {key}={}", Value::from(value)),
                        Slot::Bool(value) => write!(pretty, " {key}={value}"),
                    };
                }
                // One event, one line: a value with a line break cannot start a forged entry.
                out.extend_from_slice(pretty.replace('\r', "\\r").replace('\n', "\\n").as_bytes());
            }
        }
    }

    fn write_event<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>, line: &mut Fields)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let metadata = event.metadata();
        // RFC 3339 with nanoseconds is 35 bytes at most; formatted on the stack.
        const TS_ROOM: usize = 48;
        let mut ts = [0; TS_ROOM];
        let mut rest = &mut ts[..];
        let _ = OffsetDateTime::now_utc().format_into(&mut rest, &Rfc3339);
        // What the writes left over tells how much they wrote.
        let written = TS_ROOM - rest.len();
        line.push_text("ts", std::str::from_utf8(&ts[..written]).unwrap_or_default());
        line.push_text("level", level_name(*metadata.level()));
        line.push_text("target", metadata.target());
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<Fields>() {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut Recorder { fields: line, secrets: &self.secrets, replace: false });
        LINE.with_borrow_mut(|text| {
            text.clear();
            self.render(line, text);
            text.push(b'\n');
            let mut sink = self.sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Logging must never take the service down; a closed stdout just loses lines.
            let _ = sink.write_all(text);
            let _ = sink.flush();
        });
    }
}

impl<S> Layer<S> for LogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut Recorder { fields: &mut fields, secrets: &self.secrets, replace: true });
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(&mut Recorder { fields, secrets: &self.secrets, replace: true });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // The line is assembled in a buffer per thread; a line logged while one is being assembled (by
        // a value's `Debug`) gets one of its own.
        FIELDS.with(|fields| match fields.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                self.write_event(event, &ctx, &mut line);
            }
            Err(_) => self.write_event(event, &ctx, &mut Fields::default()),
        });
    }
}

thread_local! {
    /// Each thread assembles its lines in buffers that keep their capacity.
    static FIELDS: std::cell::RefCell<Fields> = std::cell::RefCell::new(Fields::default());
    static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A sink that keeps every line in memory: what tests read the logs from.
#[derive(Debug, Clone, Default)]
pub struct MemorySink(Arc<Mutex<Vec<u8>>>);

impl MemorySink {
    pub fn sink(&self) -> Sink {
        Arc::new(Mutex::new(Box::new(self.clone())))
    }

    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned()
    }
}

impl Write for MemorySink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The filter from LOG_LEVEL (`info`, `debug,sqlx=warn`, …).
pub fn filter(config: &Config) -> anyhow::Result<EnvFilter> {
    EnvFilter::try_new(&config.log_level).map_err(|error| {
        anyhow::anyhow!(
            "LOG_LEVEL={:?} is not a log filter ({error}); use e.g. info or debug,sqlx=warn",
            config.log_level
        )
    })
}

/// Installs the process-wide subscriber writing to stdout from a thread of its own (requests never
/// wait on the output), with the trace exporter's layer when one is configured; the guard flushes what
/// is queued when dropped at the end of `main`.
pub fn init(config: &Config, traces: Option<&crate::traces::Traces>) -> anyhow::Result<FlushGuard> {
    let (writer, guard) = log_writer::spawn(std::io::stdout());
    let sink: Sink = Arc::new(Mutex::new(Box::new(writer)));
    let layer = LogLayer::new(config.log_format, config.secret_values(), sink);
    let traces = traces.map(crate::traces::Traces::layer);
    tracing_subscriber::registry().with(filter(config)?).with(layer).with(traces).try_init()?;
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat, log: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let layer =
            LogLayer::new(format, vec!["sentinel-secret-value".into()], Arc::new(Mutex::new(Box::new(buffer.clone()))));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), log);
        String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8")
    }

    #[test]
    fn json_lines_carry_ts_level_and_span_fields() {
        let out = capture(LogFormat::Json, || {
            let span = tracing::info_span!("request", request_id = "abc-123", user_id = tracing::field::Empty);
            let _entered = span.enter();
            span.record("user_id", 42);
            tracing::info!(status = 200, "request");
        });
        let line: Value = serde_json::from_str(out.trim()).expect("one JSON line");
        assert!(line["ts"].as_str().expect("ts").ends_with('Z'));
        assert_eq!(line["level"], "info");
        assert_eq!(line["request_id"], "abc-123");
        assert_eq!(line["user_id"], 42);
        assert_eq!(line["status"], 200);
        assert_eq!(line["message"], "request");
    }

    #[test]
    fn sensitive_fields_and_secret_values_are_redacted() {
        let out = capture(LogFormat::Json, || {
            tracing::warn!(
                authorization = "Bearer abc",
                password = "hunter2",
                session_token = "t0k3n",
                note = "key is sentinel-secret-value here",
                "login"
            );
        });
        for leaked in ["Bearer abc", "hunter2", "t0k3n", "sentinel-secret-value"] {
            assert!(!out.contains(leaked), "{leaked} leaked: {out}");
        }
        assert!(out.contains("key is [redacted] here"));
    }

    #[test]
    fn sensitive_names_are_found_in_any_case_and_position() {
        for name in ["authorization", "X_Api_Key", "userPassword", "PASSWD", "refresh_token", "apikey", "cookies"] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["path", "latency_ms", "remote_ip", "status", "tok", "pass", ""] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn a_callsite_logged_again_is_redacted_again() {
        let out = capture(LogFormat::Json, || {
            for _ in 0..3 {
                tracing::info!(password = "hunter2", note = "plain", "login");
            }
        });
        assert_eq!(out.lines().count(), 3);
        assert_eq!(out.matches("hunter2").count(), 0, "{out}");
        assert_eq!(out.matches("plain").count(), 3, "{out}");
    }

    #[test]
    fn line_breaks_cannot_forge_entries() {
        let forged = "x\r\n{\"level\":\"info\",\"message\":\"admin logged in\"}";
        let json = capture(LogFormat::Json, || tracing::info!(path = forged, "request"));
        assert_eq!(json.lines().count(), 1);
        let pretty = capture(LogFormat::Pretty, || tracing::info!(path = forged, "request"));
        assert_eq!(pretty.lines().count(), 1, "{pretty}");
        assert!(pretty.contains("INFO") && pretty.contains("path=x\\r\\n"), "{pretty}");
    }
}
