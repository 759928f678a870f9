//! Where the writer thread puts lines: a file (reopened on rotation) or stdout.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where the writer thread puts lines: a file, stdout, or a test double.
pub trait AuditSink: Send + 'static {
    /// One write; may write part of `buf`, like `write(2)`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Open the destination anew (SIGHUP, rotation, after a failed write).
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Whether the destination's name now points at another file or at none (rotation).
    fn moved(&self) -> bool {
        false
    }
    /// Whether the destination ends in the middle of a line (a torn record from before it was
    /// opened): the next record must start on a new line.
    fn ends_mid_line(&self) -> bool {
        false
    }
}

pub(super) fn open_append(path: &Path) -> io::Result<File> {
    // Readable too: the last byte tells whether an earlier process left a torn record.
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
}

pub(super) struct FileSink {
    pub(super) path: PathBuf,
    pub(super) file: File,
}

impl AuditSink for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.file = open_append(&self.path)?;
        Ok(())
    }

    #[cfg(unix)]
    fn moved(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(&self.path), self.file.metadata()) {
            (Err(error), _) => error.kind() == io::ErrorKind::NotFound,
            (Ok(named), Ok(open)) => (named.dev(), named.ino()) != (open.dev(), open.ino()),
            (Ok(_), Err(_)) => false,
        }
    }

    #[cfg(unix)]
    fn ends_mid_line(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let Ok(length) = self.file.metadata().map(|m| m.len()) else {
            return false;
        };
        let mut last = [0u8; 1];
        length > 0 && self.file.read_exact_at(&mut last, length - 1).is_ok() && last[0] != b'\n'
    }
}

/// Stdout through a duplicate of fd 1: unbuffered (one write per line) and outside the process-wide
/// stdout lock, so a stalled reader blocks only the writer thread.
pub(super) struct StdoutSink(Box<dyn Write + Send>);

impl StdoutSink {
    pub(super) fn new() -> Self {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            if let Ok(fd) = io::stdout().as_fd().try_clone_to_owned() {
                return Self(Box::new(File::from(fd)));
            }
        }
        Self(Box::new(io::stdout()))
    }
}

impl AuditSink for StdoutSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.0.write(buf)?;
        self.0.flush()?;
        Ok(written)
    }
}
