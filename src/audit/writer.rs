//! The writer thread: whole lines in batches, a new line after any fragment, reopening on
//! SIGHUP and rotation.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use std::time::Duration;

use super::{AuditSink, LossReason, Shared};

/// How often the writer checks whether the file was renamed or deleted, and retries a destination
/// whose last write failed.
const ROTATION_CHECK: Duration = Duration::from_secs(1);
/// The writer wakes at least this often to act on SIGHUP and rotation while no record comes.
const IDLE_WAKE: Duration = Duration::from_millis(250);
/// Most bytes of waiting records the writer joins into one write.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// How long the writer lets records gather after a write of several (see `run_writer`).
const BATCH_LINGER: Duration = Duration::from_millis(2);

/// Write `buf` completely; on failure, how much of it was written.
pub(super) fn write_fully(sink: &mut dyn AuditSink, buf: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut done = 0;
    while done < buf.len() {
        match sink.write(&buf[done..]) {
            Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
            Ok(written) => done += written,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err((done, error)),
        }
    }
    Ok(())
}

/// The writer thread's side: whole lines, and a new line after any fragment.
pub(super) struct LineWriter {
    pub(super) sink: Box<dyn AuditSink>,
    /// A fragment of a line was written: the next record must start on a new line.
    pub(super) fragment: bool,
}

impl LineWriter {
    pub(super) fn new(sink: Box<dyn AuditSink>, shared: &Shared) -> Self {
        let mut writer = Self {
            sink,
            fragment: false,
        };
        writer.check_tail(shared);
        writer
    }

    /// A file that ends mid-line (a process that died or hit a full disk mid-write) gets its
    /// fragment terminated before our first record, which would otherwise be glued to it.
    pub(super) fn check_tail(&mut self, shared: &Shared) {
        if !self.fragment && self.sink.ends_mid_line() {
            self.fragment = true;
            shared.counters.torn_tails.inc();
            tracing::warn!(
                "the audit log ends in a torn record from an earlier write: ending it with a newline; `guardrails replay` reports it as torn"
            );
        }
    }

    /// Write whole lines; on failure, how many bytes of them were written.
    pub(super) fn write_lines(&mut self, lines: &[u8]) -> Result<(), (usize, io::Error)> {
        if self.fragment {
            write_fully(self.sink.as_mut(), b"\n").map_err(|(_, error)| (0, error))?;
            self.fragment = false;
        }
        write_fully(self.sink.as_mut(), lines).inspect_err(|&(written, _)| {
            self.fragment = written > 0 && lines[written - 1] != b'\n';
        })
    }

    pub(super) fn reopen(&mut self, shared: &Shared, why: &'static str) {
        let moved = self.sink.moved();
        match self.sink.reopen() {
            Ok(()) => {
                shared.counters.reopens.inc();
                // A new file starts clean; the fragment stays in the old one.
                if moved {
                    self.fragment = false;
                }
                tracing::info!(why, "audit log reopened");
                self.check_tail(shared);
            }
            Err(error) => {
                tracing::error!(%error, why, "cannot reopen the audit log; writing on to the open one");
                shared.set_error(format!("cannot reopen: {error}"));
            }
        }
    }
}

pub(super) fn run_writer(sink: Box<dyn AuditSink>, receiver: Receiver<Vec<u8>>, shared: &Shared) {
    let mut writer = LineWriter::new(sink, shared);
    let mut last_check = Instant::now();
    let mut batch = Vec::new();
    loop {
        let received = receiver.recv_timeout(IDLE_WAKE);
        reopen_if_due(&mut writer, shared, &mut last_check);
        let line = match received {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let lines = gather_batch(&receiver, &line, &mut batch);
        write_batch(&mut writer, shared, &batch, lines);
        // A burst must not keep a large buffer alive once it has passed.
        if batch.capacity() > MAX_BATCH_BYTES * 2 {
            batch = Vec::new();
        }
        // Under load, let records gather for a moment rather than being woken for each one:
        // a sender wakes the writer only when it waits in `recv`, and every wake-up costs the
        // request path a system call and both sides a context switch.
        if lines > 1 {
            std::thread::sleep(BATCH_LINGER);
        }
    }
}

/// Reopen on SIGHUP at once; every `ROTATION_CHECK`, when the file was renamed or deleted or the
/// last write failed.
fn reopen_if_due(writer: &mut LineWriter, shared: &Shared, last_check: &mut Instant) {
    if shared.reopen_requested.swap(false, Ordering::AcqRel) {
        writer.reopen(shared, "SIGHUP");
        *last_check = Instant::now();
    } else if last_check.elapsed() >= ROTATION_CHECK {
        *last_check = Instant::now();
        if writer.sink.moved() {
            writer.reopen(shared, "renamed or deleted");
        } else if shared.write_failing.load(Ordering::Acquire) {
            writer.reopen(shared, "after a failed write");
        }
    }
}

/// `first` and the records already waiting behind it, up to `MAX_BATCH_BYTES`, into `batch`;
/// how many records that is.
fn gather_batch(receiver: &Receiver<Vec<u8>>, first: &[u8], batch: &mut Vec<u8>) -> u64 {
    // Under load, lines arrive faster than one write each: whatever else is already
    // waiting goes out in the same write (still whole lines, in order).
    batch.clear();
    batch.extend_from_slice(first);
    let mut lines: u64 = 1;
    while batch.len() < MAX_BATCH_BYTES {
        match receiver.try_recv() {
            Ok(line) => {
                batch.extend_from_slice(&line);
                lines += 1;
            }
            Err(_) => break,
        }
    }
    lines
}

/// Write a batch of `lines` records and count them: written, or lost to the write error, and no
/// longer buffered either way.
fn write_batch(writer: &mut LineWriter, shared: &Shared, batch: &[u8], lines: u64) {
    match writer.write_lines(batch) {
        Ok(()) => {
            shared.counters.written.inc_by(lines);
            shared.write_failing.store(false, Ordering::Release);
        }
        Err((written, error)) => {
            // Lines wholly written before the failure were kept.
            let kept = batch[..written].iter().filter(|&&b| b == b'\n').count() as u64;
            shared.counters.written.inc_by(kept);
            shared.write_failing.store(true, Ordering::Release);
            for _ in kept..lines {
                shared.lost(LossReason::WriteError, Some(&error));
            }
        }
    }
    shared
        .counters
        .buffered_records
        .dec_by(i64::try_from(lines).unwrap_or(i64::MAX));
    shared
        .counters
        .buffered_bytes
        .dec_by(i64::try_from(batch.len()).unwrap_or(i64::MAX));
}
