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

/// The fields of an event or span, in the order they were recorded. Field names are static: only the
/// values are owned.
#[derive(Debug, Default)]
struct Fields(Vec<(&'static str, Value)>);

impl Fields {
    fn set(&mut self, field: &Field, value: Value) {
        let name = field.name().trim_start_matches("r#");
        match self.0.iter_mut().find(|(existing, _)| *existing == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, Value::from(format!("{value:?}")));
    }
}

/// Whether a field name holds one of the sensitive words, in any case (without allocating: it runs for
/// every field of every line).
fn is_sensitive(key: &str) -> bool {
    let key = key.as_bytes();
    SENSITIVE.iter().any(|word| {
        let word = word.as_bytes();
        key.windows(word.len())
            .any(|window| window[0].eq_ignore_ascii_case(&word[0]) && window.eq_ignore_ascii_case(word))
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

impl LogLayer {
    pub fn new(format: LogFormat, secrets: Vec<String>, sink: Sink) -> Self {
        Self { format, secrets, sink }
    }

    fn redact(&self, key: &str, value: Value) -> Value {
        if is_sensitive(key) {
            return Value::from(REDACTED);
        }
        match value {
            Value::String(text) => Value::String(self.redact_text(text)),
            other => other,
        }
    }

    fn redact_text(&self, mut text: String) -> String {
        for secret in &self.secrets {
            // Most values (methods, routes, ids) are shorter than any secret: no search needed.
            if text.len() >= secret.len() && text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }

    /// One line, without its newline: JSON with the keys in the order given (a later duplicate wins,
    /// as an event's field over its span's), or the readable form.
    fn render(&self, line: &[(&str, Value)], out: &mut Vec<u8>) {
        let latest = |index: usize, key: &str| !line[index + 1..].iter().any(|(name, _)| *name == key);
        let fields = line.iter().enumerate().filter(|(index, (key, _))| latest(*index, key)).map(|(_, field)| field);
        match self.format {
            LogFormat::Json => {
                out.push(b'{');
                for (index, (key, value)) in fields.enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    // JSON escapes line breaks: one event is always one line.
                    let _ = serde_json::to_writer(&mut *out, key);
                    out.push(b':');
                    let _ = serde_json::to_writer(&mut *out, value);
                }
                out.push(b'}');
            }
            LogFormat::Pretty => {
                let get =
                    |key: &str| line.iter().rev().find(|(name, _)| *name == key).and_then(|(_, value)| value.as_str());
                let text = |key: &str| get(key).unwrap_or_default();
                let mut pretty = format!(
                    "{} {:>5} {}: {}",
                    text("ts"),
                    text("level").to_ascii_uppercase(),
                    text("target"),
                    text("message")
                );
                for (key, value) in fields.filter(|(key, _)| !matches!(*key, "ts" | "level" | "target" | "message")) {
                    let _ = match value {
                        Value::String(text) => write!(pretty, " {key}={text}"),
                        other => write!(pretty, " {key}={other}"),
                    };
                }
                // One event, one line: a value with a line break cannot start a forged entry.
                out.extend_from_slice(pretty.replace('\r', "\\r").replace('\n', "\\n").as_bytes());
            }
        }
    }
}

impl<S> Layer<S> for LogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let ts = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
        let mut line: Vec<(&str, Value)> = Vec::with_capacity(16);
        line.push(("ts", Value::from(ts)));
        line.push(("level", Value::from(level_name(*metadata.level()))));
        line.push(("target", Value::from(metadata.target())));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<Fields>() {
                    for (key, value) in &fields.0 {
                        line.push((key, self.redact(key, value.clone())));
                    }
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        for (key, value) in fields.0 {
            let value = self.redact(key, value);
            line.push((key, value));
        }
        LINE.with_borrow_mut(|text| {
            text.clear();
            self.render(&line, text);
            text.push(b'\n');
            let mut sink = self.sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Logging must never take the service down; a closed stdout just loses lines.
            let _ = sink.write_all(text);
            let _ = sink.flush();
        });
    }
}

thread_local! {
    /// Each thread formats its lines in one buffer that keeps its capacity.
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
    fn line_breaks_cannot_forge_entries() {
        let forged = "x\r\n{\"level\":\"info\",\"message\":\"admin logged in\"}";
        let json = capture(LogFormat::Json, || tracing::info!(path = forged, "request"));
        assert_eq!(json.lines().count(), 1);
        let pretty = capture(LogFormat::Pretty, || tracing::info!(path = forged, "request"));
        assert_eq!(pretty.lines().count(), 1, "{pretty}");
        assert!(pretty.contains("INFO") && pretty.contains("path=x\\r\\n"), "{pretty}");
    }
}
