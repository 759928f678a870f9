use std::sync::{Arc, Mutex};

use super::writer::LineWriter;
use super::*;

/// Accepts `budget` bytes, then fails like a full disk until `budget` is raised.
#[derive(Clone)]
struct FillingDisk {
    written: Arc<Mutex<Vec<u8>>>,
    budget: Arc<Mutex<usize>>,
}

impl FillingDisk {
    fn new(budget: usize) -> Self {
        Self {
            written: Arc::default(),
            budget: Arc::new(Mutex::new(budget)),
        }
    }

    fn text(&self) -> String {
        String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
    }
}

impl AuditSink for FillingDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut budget = self.budget.lock().unwrap();
        if *budget == 0 {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        let n = buf.len().min(*budget);
        *budget -= n;
        self.written.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

#[test]
fn a_partial_write_never_glues_the_next_record_to_the_fragment() {
    let disk = FillingDisk::new(30);
    let mut writer = LineWriter {
        sink: Box::new(disk.clone()),
        fragment: false,
    };
    let first = b"{\"uid\":\"first\",\"padding\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}\n";
    let second = b"{\"uid\":\"second\"}\n";
    assert!(writer.write_lines(first).is_err(), "the disk filled up");
    // Still full: the second record is lost too, and nothing more is written.
    assert!(writer.write_lines(second).is_err());
    assert_eq!(disk.text().len(), 30);
    *disk.budget.lock().unwrap() = 1 << 20;
    writer.write_lines(second).unwrap();
    let text = disk.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text:?}");
    assert!(serde_json::from_str::<serde_json::Value>(lines[0]).is_err());
    assert_eq!(lines[1], "{\"uid\":\"second\"}");
    assert!(text.ends_with('\n'));
}

#[test]
fn an_unwritten_record_leaves_no_blank_line() {
    let disk = FillingDisk::new(0);
    let mut writer = LineWriter {
        sink: Box::new(disk.clone()),
        fragment: false,
    };
    assert!(writer.write_lines(b"{}\n").is_err());
    *disk.budget.lock().unwrap() = 1 << 20;
    writer.write_lines(b"{\"a\":1}\n").unwrap();
    assert_eq!(disk.text(), "{\"a\":1}\n");
}

#[test]
fn loss_reasons_are_a_closed_set_and_exist_from_the_start() {
    let counters = AuditCounters::new();
    assert_eq!(counters.dropped(LossReason::BufferFull), 0);
    assert_eq!(counters.dropped(LossReason::WriteError), 0);
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("dropped", "", counters.dropped.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("dropped_total{reason=\"buffer_full\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("dropped_total{reason=\"write_error\"} 0"),
        "{text}"
    );
}

#[test]
fn a_batch_cut_at_a_line_end_keeps_the_whole_lines_and_adds_no_blank_line() {
    let first = b"{\"uid\":\"first\"}\n";
    let disk = FillingDisk::new(first.len());
    let mut writer = LineWriter {
        sink: Box::new(disk.clone()),
        fragment: false,
    };
    let batch = [
        &first[..],
        b"{\"uid\":\"second\"}\n",
        b"{\"uid\":\"third\"}\n",
    ]
    .concat();
    let (written, _) = writer.write_lines(&batch).unwrap_err();
    assert_eq!(written, first.len(), "one whole line made it");
    *disk.budget.lock().unwrap() = 1 << 20;
    writer.write_lines(b"{\"uid\":\"fourth\"}\n").unwrap();
    assert_eq!(disk.text(), "{\"uid\":\"first\"}\n{\"uid\":\"fourth\"}\n");
}
