//! The one log line per answered review, written without `tracing`'s formatter.
//!
//! At tens of thousands of reviews per second, formatting the line through `tracing_subscriber`'s
//! JSON layer (a `serde_json` serializer per event, a UTF-8 check per write) cost about a tenth of
//! the webhook's CPU. With JSON logs, the line is written here instead, straight into the log
//! writer's buffer, with exactly the members, order and value formats the JSON layer writes
//! (`timestamp`, `level`, `message`, the fields, `target`); the tests check the two against each
//! other. With text logs, or without the log writer thread, `tracing` writes it.

use std::io::Write as _;

use time::OffsetDateTime;

use crate::logsink::LogSink;

/// The `target` of the review line: the module that logs it, as `tracing` names it.
pub const TARGET: &str = "mesh_webhook::server";

/// The line's `message`.
pub const MESSAGE: &str = "admission review";

/// What the line says about one answered review.
#[derive(Debug, Clone, Copy)]
pub struct ReviewLine<'a> {
    /// The review's namespace.
    pub namespace: &'a str,
    /// The pod's name, or its `generateName`.
    pub pod: &'a str,
    /// The review's uid.
    pub uid: &'a str,
    /// `injected`, `skipped` or `denied`.
    pub outcome: &'a str,
    /// Why (a skip reason, a denial's message); empty for injections.
    pub reason: &'a str,
    /// Whether the answer came from the review cache.
    pub cached: bool,
    /// Time to answer, in microseconds.
    pub elapsed_us: u64,
}

impl ReviewLine<'_> {
    /// Appends the JSON line (with its newline), as the JSON layer writes an `INFO` event with
    /// these fields at `now`.
    pub fn write_json(&self, now: OffsetDateTime, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        write_timestamp(now, out);
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":");
        push_str(out, MESSAGE);
        for (key, value) in [
            ("namespace", self.namespace),
            ("pod", self.pod),
            ("uid", self.uid),
            ("outcome", self.outcome),
            ("reason", self.reason),
        ] {
            out.push(b',');
            push_str(out, key);
            out.push(b':');
            push_str(out, value);
        }
        let _ = write!(out, ",\"cached\":{},\"elapsed_us\":{},\"target\":", self.cached, self.elapsed_us);
        push_str(out, TARGET);
        out.extend_from_slice(b"}\n");
    }
}

/// A JSON string, escaped as `serde_json` (and so the JSON layer) escapes it.
fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// RFC 3339 in UTC with microseconds, as `tracing_subscriber`'s default timer writes it:
/// `2026-11-21T21:38:05.297346Z`.
pub fn write_timestamp(t: OffsetDateTime, out: &mut Vec<u8>) {
    let t = t.to_offset(time::UtcOffset::UTC);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    );
}

/// Where review lines go when they bypass `tracing`: the JSON log writer.
#[derive(Clone)]
pub struct ReviewLog {
    sink: LogSink,
}

impl std::fmt::Debug for ReviewLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReviewLog")
    }
}

impl ReviewLog {
    /// Review lines written as JSON into `sink`, the JSON layer's writer.
    pub fn new(sink: LogSink) -> ReviewLog {
        ReviewLog { sink }
    }

    /// Writes the line now.
    pub fn write(&self, line: &ReviewLine) {
        let mut buf = Vec::with_capacity(256 + line.pod.len() + line.reason.len());
        line.write_json(OffsetDateTime::now_utc(), &mut buf);
        self.sink.append(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logsink::tests::Recorder;
    use serde_json::Value;

    fn line() -> ReviewLine<'static> {
        ReviewLine {
            namespace: "foo",
            pod: "web-\"7d\"\\x\n-",
            uid: "71fbb421-0bee-4029-8526-e91a2b4cec6a",
            outcome: "denied",
            reason: "invalid annotation sidecar.istio.io/interceptionMode=\"x\u{1}\"; ü",
            cached: true,
            elapsed_us: 123,
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let cases = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400_000_001, "2000-02-29T00:00:00.000001Z"),
            (1_795_297_085_297_346, "2026-11-21T21:38:05.297346Z"),
            (4_102_444_799_999_999, "2099-12-31T23:59:59.999999Z"),
        ];
        for (micros, want) in cases {
            let t = OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).unwrap();
            let mut out = Vec::new();
            write_timestamp(t, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want);
            // Another offset names the same instant in UTC.
            let mut out = Vec::new();
            write_timestamp(t.to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap()), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    /// What the JSON layer, configured as `init_logging` configures it, writes for the same event.
    fn from_tracing(line: &ReviewLine) -> String {
        let capture = Recorder::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || crate::server::log_review_with_tracing(line));
        capture.text()
    }

    #[test]
    fn the_line_is_what_the_json_layer_writes() {
        for line in [line(), ReviewLine { pod: "", reason: "", cached: false, elapsed_us: 0, ..line() }] {
            let theirs = from_tracing(&line);
            let mut ours = Vec::new();
            line.write_json(OffsetDateTime::now_utc(), &mut ours);
            let ours = String::from_utf8(ours).unwrap();
            assert!(ours.ends_with('\n') && !ours[..ours.len() - 1].contains('\n'), "{ours:?}");
            assert!(theirs.ends_with('\n'), "{theirs:?}");
            // The same members in the same order with the same values, but for the time.
            let members = |text: &str| -> Vec<(String, Value)> {
                let v: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
                v.into_iter().map(|(k, v)| if k == "timestamp" { (k, Value::Null) } else { (k, v) }).collect()
            };
            assert_eq!(members(&ours), members(&theirs));
            // Byte for byte from the level on (the JSON layer's own escaping and number format).
            let tail = |text: &str| text.split_once("\",\"level\"").map(|(_, t)| t.to_owned()).unwrap();
            assert_eq!(tail(&ours), tail(&theirs));
            // Both timestamps parse and have microseconds.
            for text in [&ours, &theirs] {
                let ts = timestamp_of(text);
                assert_eq!(ts.len(), "2026-11-21T21:38:05.297346Z".len(), "{ts}");
                time::OffsetDateTime::parse(&ts, &time::format_description::well_known::Rfc3339).unwrap();
            }
        }
    }

    fn timestamp_of(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        v["timestamp"].as_str().unwrap().to_owned()
    }

    #[test]
    fn lines_reach_the_sink_whole() {
        let out = Recorder::default();
        let (sink, guard) = LogSink::spawn(out.clone()).unwrap();
        let log = ReviewLog::new(sink);
        for _ in 0..3 {
            log.write(&line());
        }
        drop(guard);
        let text = out.text();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l["pod"] == line().pod && l["cached"] == true && l["elapsed_us"] == 123));
    }
}
