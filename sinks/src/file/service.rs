//! The file sink: one encoded record per line, appended; the file is rotated when it
//! reaches `max_bytes` (`path` → `path.1` → `path.2` …, keeping `keep` old files), and
//! with `fsync = "always"` a batch is answered Delivered only after its bytes reach the
//! disk.

use super::config::{FileConfig, FsyncPolicy};
use crate::encoding;
use coro_core::sink::{Batch, Outcome, SinkError};
use futures::future::BoxFuture;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// The file sink service; clones write to the same file.
#[derive(Debug, Clone)]
pub struct FileSink {
    state: Arc<Mutex<State>>,
    config: Arc<FileConfig>,
}

#[derive(Debug)]
struct State {
    file: Option<File>,
    size: u64,
}

impl FileSink {
    /// Opens (creating, appending) the file named in `config`.
    pub fn open(config: FileConfig) -> Result<Self, SinkError> {
        let (file, size) = open(&config.path)?;
        Ok(FileSink {
            state: Arc::new(Mutex::new(State {
                file: Some(file),
                size,
            })),
            config: Arc::new(config),
        })
    }
}

fn open(path: &Path) -> Result<(File, u64), SinkError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_error(path, &e))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(|e| io_error(path, &e))?;
    let size = drop_torn_line(&file).map_err(|e| io_error(path, &e))?;
    Ok((file, size))
}

/// A crash in the middle of a write leaves half a line at the end. Its record was never
/// answered Delivered (that waits for the write and the fsync), so it will come again:
/// cut the fragment off rather than glue the next record to it. Returns the new size.
fn drop_torn_line(file: &File) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(0);
    }
    let mut reader = file;
    let mut tail = Vec::new();
    let start = size.saturating_sub(64 * 1024);
    reader.seek(SeekFrom::Start(start))?;
    reader.read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(size);
    }
    let keep = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => start + i as u64 + 1,
        // No line end in the last 64 KiB: a single torn line longer than that, or a
        // file that is not ours; keep whole lines only.
        None if start == 0 => 0,
        None => return Ok(size),
    };
    file.set_len(keep)?;
    Ok(keep)
}

/// I/O failures are worth retrying: a full disk or a lost mount may come back.
fn io_error(path: &Path, e: &std::io::Error) -> SinkError {
    SinkError::Retriable(format!("{}: {e}", path.display()))
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl State {
    /// Moves `path` to `path.1` (and older ones up), dropping what is past `keep`.
    fn rotate(&mut self, config: &FileConfig) -> Result<(), SinkError> {
        self.file = None;
        let path = &config.path;
        if config.keep == 0 {
            std::fs::remove_file(path).map_err(|e| io_error(path, &e))?;
        } else {
            for n in (1..config.keep).rev() {
                let from = rotated(path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(path, n + 1))
                        .map_err(|e| io_error(&from, &e))?;
                }
            }
            std::fs::rename(path, rotated(path, 1)).map_err(|e| io_error(path, &e))?;
        }
        let (file, size) = open(path)?;
        self.file = Some(file);
        self.size = size;
        Ok(())
    }

    /// The open file, reopened if a failed rotation left none.
    fn file(&mut self, config: &FileConfig) -> Result<&mut File, SinkError> {
        if self.file.is_none() {
            let (file, size) = open(&config.path)?;
            self.size = size;
            return Ok(self.file.insert(file));
        }
        self.file
            .as_mut()
            .ok_or_else(|| SinkError::Retriable(format!("{}: not open", config.path.display())))
    }

    fn write_batch(
        &mut self,
        batch: &Batch,
        config: &FileConfig,
    ) -> Result<Vec<Outcome>, SinkError> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for record in &batch.records {
            let mut line = match encoding::encode(record, config.encoding) {
                Ok(bytes) => bytes,
                Err(e) => {
                    outcomes.push(Outcome::reject(format!("encode: {e}")));
                    continue;
                }
            };
            line.push(b'\n');
            if self.size > 0 && self.size + line.len() as u64 > config.max_bytes {
                self.rotate(config)?;
            }
            self.file(config)?
                .write_all(&line)
                .map_err(|e| io_error(&config.path, &e))?;
            self.size += line.len() as u64;
            outcomes.push(Outcome::Delivered);
        }
        if config.fsync == FsyncPolicy::Always {
            if let Some(file) = &self.file {
                file.sync_data().map_err(|e| io_error(&config.path, &e))?;
            }
        }
        Ok(outcomes)
    }
}

impl tower::Service<Batch> for FileSink {
    type Response = Vec<Outcome>;
    type Error = SinkError;
    type Future = BoxFuture<'static, Result<Vec<Outcome>, SinkError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        let state = self.state.clone();
        let config = self.config.clone();
        Box::pin(async move {
            // File writes and fsync block; keep them off the async workers.
            tokio::task::spawn_blocking(move || {
                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                state.write_batch(&batch, &config)
            })
            .await
            .unwrap_or_else(|e| Err(SinkError::Retriable(format!("file writer stopped: {e}"))))
        })
    }
}
