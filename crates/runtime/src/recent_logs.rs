//! The most recent log lines of this process, kept in memory so an admin can read them over
//! the API (MONAI Label's `GET /logs/`) without a shell on the machine or a log file: a
//! bounded ring of plain-text lines fed by a second log layer ([`crate::telemetry::init`]).

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;

/// Lines kept: older ones are dropped first.
pub const CAPACITY: usize = 2000;
/// Longest line kept, in bytes; a longer one is cut (at a character boundary) and marked.
pub const MAX_LINE: usize = 4096;

static LINES: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

/// The last `n` lines (at most [`CAPACITY`]), oldest first, each ending in a newline.
pub fn last(n: usize) -> String {
    let lines = LINES.lock().unwrap_or_else(|e| e.into_inner());
    let skip = lines.len().saturating_sub(n);
    lines.iter().skip(skip).map(String::as_str).collect()
}

fn push(line: &str) {
    let mut line = if line.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{} [cut]", &line[..end])
    } else {
        line.to_string()
    };
    line.push('\n');
    let mut lines = LINES.lock().unwrap_or_else(|e| e.into_inner());
    if lines.len() == CAPACITY {
        lines.pop_front();
    }
    lines.push_back(line);
}

/// A log writer for one event: collects what the formatter writes and keeps it, line by
/// line, when dropped (a formatter writes an event in one or more calls, then drops it).
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl io::Write for Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // One event never needs more than a few lines; past that, the rest is not kept.
        let room = (4 * MAX_LINE).saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        for line in text.lines().filter(|l| !l.is_empty()) {
            push(line);
        }
    }
}

/// The writer maker for `tracing_subscriber::fmt::layer().with_writer(..)`.
pub fn writer() -> Writer {
    Writer::default()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn keeps_the_last_lines_bounded_and_cut() {
        for i in 0..CAPACITY + 5 {
            let mut w = writer();
            writeln!(w, "line {i}").unwrap();
        }
        let long = "é".repeat(MAX_LINE);
        writeln!(writer(), "{long}").unwrap();
        let all = last(usize::MAX);
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), CAPACITY);
        assert_eq!(lines[0], "line 6");
        assert!(lines[CAPACITY - 1].ends_with(" [cut]"));
        assert!(lines[CAPACITY - 1].len() <= MAX_LINE + 6);
        assert_eq!(
            last(2).lines().next(),
            Some(format!("line {}", CAPACITY + 4).as_str())
        );
    }
}
