//! Log lines written by a background thread: the request path appends a formatted line to a shared
//! buffer, and one thread writes whatever has accumulated with a single `write` call, at most one
//! write per millisecond. Under load many lines share one system call instead of one each; when idle
//! a line is written as soon as the thread wakes. Nothing is dropped: when the output is stuck and the buffer is full, loggers wait, as they
//! would with direct writes. [`LogGuard`] writes what is left when it is dropped.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// Above this many buffered bytes, loggers wait for the writer thread.
const MAX_BUFFERED: usize = 8 * 1024 * 1024;

/// The writer's pause after each write.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(1);

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when there is something to write, or on close.
    filled: Condvar,
    /// Signalled when the writer has taken the buffer.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A logger that panicked while holding the lock left the buffer whole (appends are atomic).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where log lines go: a [`tracing_subscriber::fmt::MakeWriter`] for the fmt layer.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

/// Stops the writer thread after it has written everything buffered.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogSink {
    /// Starts the writer thread for `out`.
    pub fn spawn<W: Write + Send + 'static>(mut out: W) -> std::io::Result<(LogSink, LogGuard)> {
        let shared = Arc::new(Shared::default());
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new().name("log-writer".into()).spawn(move || {
            let mut spare = Vec::new();
            loop {
                {
                    let mut state = for_thread.lock();
                    while state.buf.is_empty() && !state.closed {
                        state = for_thread.filled.wait(state).unwrap_or_else(PoisonError::into_inner);
                    }
                    if state.buf.is_empty() {
                        return;
                    }
                    std::mem::swap(&mut state.buf, &mut spare);
                }
                for_thread.drained.notify_all();
                // A closed or broken stdout cannot be reported anywhere; keep draining so that
                // loggers never wait on it.
                let _ = out.write_all(&spare).and_then(|()| out.flush());
                spare.clear();
                // Let lines gather before the next write: under load one write (and one wake-up)
                // per millisecond instead of one per review; an idle logger's line still goes out
                // at once, as the thread then waits for it.
                std::thread::sleep(COALESCE);
            }
        })?;
        Ok((LogSink { shared: shared.clone() }, LogGuard { shared, thread: Some(thread) }))
    }

    /// Appends whole lines (waits while the buffer is full).
    pub fn append(&self, bytes: &[u8]) {
        let mut state = self.shared.lock();
        while state.buf.len() >= MAX_BUFFERED && !state.closed {
            state = self.shared.drained.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        let was_empty = state.buf.is_empty();
        state.buf.extend_from_slice(bytes);
        drop(state);
        if was_empty {
            self.shared.filled.notify_one();
        }
    }
}

impl Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogSink;

    fn make_writer(&'a self) -> LogSink {
        self.clone()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.filled.notify_all();
        self.shared.drained.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An output that records what it got and how many write calls it took.
    #[derive(Clone, Default)]
    pub(crate) struct Recorder(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Recorder {
        /// What it got, as text.
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }
    }

    impl Write for Recorder {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut r = self.0.lock().unwrap();
            r.0.extend_from_slice(bytes);
            r.1 += 1;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_arrives_whole_by_the_time_the_guard_is_dropped() {
        let out = Recorder::default();
        let (sink, guard) = LogSink::spawn(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        sink.write_all(format!("thread {t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let (bytes, writes) = out.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8000);
        for t in 0..4 {
            let own: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with(&format!("thread {t} "))).collect();
            let want: Vec<String> = (0..2000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(own, want, "thread {t}'s lines whole and in order");
        }
        assert!(writes <= 8000, "{writes} writes");
    }

    #[test]
    fn a_line_is_written_without_waiting_for_more() {
        let out = Recorder::default();
        let (mut sink, _guard) = LogSink::spawn(out.clone()).unwrap();
        sink.write_all(b"serving\n").unwrap();
        let mut seen = false;
        for _ in 0..500 {
            if out.0.lock().unwrap().0 == b"serving\n" {
                seen = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(seen, "the line reached the output while the sink stayed open");
    }
}
