//! The log's way out: each line is handed to one thread that writes to stdout through a buffer, so no
//! request waits on a slow terminal, pipe or journald, and busy times cost one wake-up and one write
//! per batch of lines (every 10 ms) instead of one per line. When the queue is full, lines are dropped and counted rather than stall the service;
//! the writer reports how many.

use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::Duration;

/// Lines that may wait for the writer: seconds of logging at full speed, a few MiB at most.
const QUEUE: usize = 16 * 1024;
/// While lines keep coming, how long they wait to be written in one batch (the queue holds far more
/// than arrive in this time).
const BATCH_INTERVAL: Duration = Duration::from_millis(10);
/// How long the end of the process waits for the queue to drain.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

enum Message {
    Line(Vec<u8>),
    /// Answered once everything before it is written.
    Flush(SyncSender<()>),
}

/// A `Write` that queues; cheap to clone, one per place that logs.
#[derive(Debug, Clone)]
pub struct NonBlocking {
    queue: SyncSender<Message>,
    dropped: std::sync::Arc<AtomicU64>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Line(_) => "Line",
            Self::Flush(_) => "Flush",
        })
    }
}

/// Flushes what is queued when dropped: keep it alive for as long as the process logs.
#[derive(Debug)]
#[must_use = "lines still queued are lost unless this guard is dropped at the end of main"]
pub struct FlushGuard(SyncSender<Message>);

impl Drop for FlushGuard {
    fn drop(&mut self) {
        let (done, wait) = sync_channel(1);
        if self.0.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(FLUSH_TIMEOUT);
        }
    }
}

/// A writer thread over `out` (stdout in the service), and the guard that flushes it at exit.
pub fn spawn(out: impl Write + Send + 'static) -> (NonBlocking, FlushGuard) {
    let (queue, lines) = sync_channel(QUEUE);
    let dropped = std::sync::Arc::new(AtomicU64::new(0));
    let counter = std::sync::Arc::clone(&dropped);
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(&lines, BufWriter::with_capacity(64 * 1024, out), &counter))
        .expect("the log writer thread starts");
    (NonBlocking { queue: queue.clone(), dropped }, FlushGuard(queue))
}

fn write_lines(lines: &Receiver<Message>, mut out: impl Write, dropped: &AtomicU64) {
    let mut busy = false;
    loop {
        let first = if busy {
            // Lines keep coming: take them a batch at a time rather than be woken by each sender (a
            // wake-up is a system call and a context switch, per request).
            std::thread::sleep(BATCH_INTERVAL);
            match lines.try_recv() {
                Ok(message) => Some(message),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        } else {
            // Idle: wait for the next line, which wakes this thread.
            match lines.recv_timeout(Duration::from_secs(1)) {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        busy = first.is_some();
        // Whatever else is queued, before flushing once.
        let mut next = first;
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Message::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = lines.try_recv().ok();
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(
                out,
                r#"{{"level":"warn","target":"log_writer","message":"log lines dropped: the output could not keep up","dropped":{lost}}}"#
            );
        }
        let _ = out.flush();
    }
}

impl Write for NonBlocking {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self.queue.try_send(Message::Line(bytes.to_vec())) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(bytes.len())
    }

    /// The writer thread flushes by itself once the queue is empty.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::telemetry::MemorySink;

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_drops() {
        let out = MemorySink::default();
        let (mut writer, guard) = spawn(out.clone());
        for n in 0..1000 {
            writer.write_all(format!("line {n}\n").as_bytes()).expect("queued");
        }
        drop(guard);
        let text = out.contents();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[999], "line 999");
    }

    #[test]
    fn a_full_queue_drops_and_reports_instead_of_blocking() {
        let (queue, lines) = sync_channel(1);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut writer = NonBlocking { queue, dropped: Arc::clone(&dropped) };
        for _ in 0..3 {
            writer.write_all(b"x\n").expect("never blocks");
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        let out = MemorySink::default();
        drop(writer);
        write_lines(&lines, out.clone(), &dropped);
        let text = out.contents();
        assert!(text.starts_with("x\n") && text.contains(r#""dropped":2"#), "{text}");
    }
}
