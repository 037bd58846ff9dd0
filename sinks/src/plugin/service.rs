//! The plugin sink service: batches go over a bounded queue to the plugin's own
//! threads and the outcomes come back over a oneshot, so a plugin that blocks, sleeps
//! or hangs only ever holds its own threads, never the async executor that every
//! pipeline shares.

use super::config::PluginConfig;
use super::library::{Instance, Plugin};
use super::PluginError;
use crate::encoding::Encoding;
use coro_core::sink::{Batch, Outcome, SinkError};
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Batches that may wait for each plugin thread; past that a call is answered
/// retry at once (the plugin is stuck, and queueing more only adds to the pile).
const QUEUE_PER_THREAD: usize = 16;

/// Longest a dropped sink waits for its plugin's `flush` and `destroy`.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The plugin sink service; clones share the plugin instance and its threads. When the
/// last clone is dropped the threads finish what is queued, `flush` and `destroy` the
/// instance, and the drop waits for that (up to 5 s, or the sink's `timeout` if
/// shorter).
#[derive(Debug, Clone)]
pub struct PluginSink {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    jobs: Option<SyncSender<Job>>,
    /// Disconnected once every plugin thread has finished (instance destroyed).
    stopped: Mutex<Receiver<()>>,
    path: String,
    timeout: Duration,
    stats: Arc<PluginStats>,
}

/// What went wrong around a plugin's calls, since it was opened: these batches were
/// answered retry. (The pipeline's metrics count their outcomes like any sink's.)
#[derive(Debug, Default)]
pub struct PluginStats {
    panics: AtomicU64,
    timeouts: AtomicU64,
    busy: AtomicU64,
    abandoned: AtomicU64,
}

impl PluginStats {
    /// Calls in which the plugin reported a panic of its own.
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Calls not answered within `timeout`.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    /// Calls refused because the queue to the plugin threads was full.
    pub fn busy(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Queued batches dropped unsent because their caller had given up waiting.
    pub fn abandoned(&self) -> u64 {
        self.abandoned.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Job {
    batch: Batch,
    reply: oneshot::Sender<Vec<Outcome>>,
    deadline: Instant,
}

type Jobs = Arc<Mutex<Receiver<Job>>>;

impl PluginSink {
    /// Loads the plugin `config` names, checks it, starts its threads and creates the
    /// instance (on the first plugin thread, within `timeout`).
    pub async fn open(config: PluginConfig) -> Result<PluginSink, PluginError> {
        let path = config.path.display().to_string();
        let threads = config.threads.max(1);
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(QUEUE_PER_THREAD * threads);
        let jobs: Jobs = Arc::new(Mutex::new(jobs_rx));
        let (alive, stopped) = mpsc::channel::<()>();
        let stats = Arc::new(PluginStats::default());
        let (created_tx, created_rx) = oneshot::channel();

        // Loading and creating run on the plugin's first thread too: library
        // initialisers and `create` may block like any other plugin call.
        let first = {
            let config = config.clone();
            let (jobs, stats, alive) = (jobs.clone(), stats.clone(), alive.clone());
            move || {
                let created = Plugin::load(&config.path).and_then(|plugin| {
                    if threads > 1 && !plugin.thread_safe() {
                        return Err(PluginError::NotThreadSafe {
                            path: config.path.clone(),
                            threads,
                        });
                    }
                    plugin.create(&config.config).map(Arc::new)
                });
                match created {
                    Ok(instance) => {
                        if created_tx.send(Ok(instance.clone())).is_ok() {
                            work(instance, &jobs, config.encoding, &stats);
                        }
                    }
                    Err(e) => {
                        let _ = created_tx.send(Err(e));
                    }
                }
                drop(alive);
            }
        };
        spawn(&path, 0, first)?;
        let instance = match tokio::time::timeout(config.timeout, created_rx).await {
            Ok(Ok(created)) => created?,
            Ok(Err(_)) => {
                return Err(PluginError::Stopped {
                    path: config.path.clone(),
                })
            }
            Err(_) => {
                return Err(PluginError::Timeout {
                    path: config.path.clone(),
                    function: "create",
                    timeout: config.timeout,
                })
            }
        };
        for n in 1..threads {
            let (instance, jobs, stats, alive) =
                (instance.clone(), jobs.clone(), stats.clone(), alive.clone());
            let encoding = config.encoding;
            spawn(&path, n, move || {
                work(instance, &jobs, encoding, &stats);
                drop(alive);
            })?;
        }
        drop(instance);
        drop(alive);
        tracing::info!(plugin = %path, threads, "plugin sink started");
        Ok(PluginSink {
            shared: Arc::new(Shared {
                jobs: Some(jobs_tx),
                stopped: Mutex::new(stopped),
                path,
                timeout: config.timeout,
                stats,
            }),
        })
    }

    /// What went wrong around this sink's plugin calls so far.
    pub fn stats(&self) -> &PluginStats {
        &self.shared.stats
    }
}

fn spawn(path: &str, n: usize, f: impl FnOnce() + Send + 'static) -> Result<(), PluginError> {
    std::thread::Builder::new()
        .name(format!("coro-plugin-{n}"))
        .spawn(f)
        .map(drop)
        .map_err(|e| PluginError::Thread {
            path: path.into(),
            reason: e.to_string(),
        })
}

/// A plugin thread: sends each queued batch whose caller still waits, until the queue
/// closes. The last thread to let go of the instance flushes and destroys it.
fn work(instance: Arc<Instance>, jobs: &Jobs, encoding: Encoding, stats: &PluginStats) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { break };
        if job.reply.is_closed() || Instant::now() >= job.deadline {
            // Answered retry already; sending now would only deliver it twice.
            stats.abandoned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let sent = instance.send(&job.batch, encoding);
        if sent.panicked {
            stats.panics.fetch_add(1, Ordering::Relaxed);
        }
        let _ = job.reply.send(sent.outcomes);
    }
    drop(instance);
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the queue lets the threads finish; wait (bounded) for `destroy`, so
        // a plugin that buffers gets to write out before the process exits.
        drop(self.jobs.take());
        let wait = SHUTDOWN_WAIT.min(self.timeout);
        let stopped = match self.stopped.lock() {
            Ok(rx) => rx.recv_timeout(wait),
            Err(poisoned) => poisoned.into_inner().recv_timeout(wait),
        };
        if let Err(mpsc::RecvTimeoutError::Timeout) = stopped {
            tracing::warn!(plugin = %self.path, ?wait, "plugin still busy at shutdown; not waiting for it to flush");
        }
    }
}

impl tower::Service<Batch> for PluginSink {
    type Response = Vec<Outcome>;
    type Error = SinkError;
    type Future = BoxFuture<'static, Result<Vec<Outcome>, SinkError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        if batch.is_empty() {
            return Box::pin(futures::future::ready(Ok(Vec::new())));
        }
        let shared = &self.shared;
        let deadline = Instant::now() + shared.timeout;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            batch,
            reply,
            deadline,
        };
        let queued = match &shared.jobs {
            Some(jobs) => jobs.try_send(job),
            None => Err(TrySendError::Disconnected(job)),
        };
        if let Err(e) = queued {
            let reason = match e {
                TrySendError::Full(_) => {
                    shared.stats.busy.fetch_add(1, Ordering::Relaxed);
                    format!(
                        "plugin {}: busy: its queue is full behind calls that have not returned",
                        shared.path
                    )
                }
                TrySendError::Disconnected(_) => {
                    format!("plugin {}: its threads have stopped", shared.path)
                }
            };
            return Box::pin(futures::future::ready(Err(SinkError::Retriable(reason))));
        }
        let path = shared.path.clone();
        let timeout = shared.timeout;
        let stats = shared.stats.clone();
        Box::pin(async move {
            match tokio::time::timeout_at(deadline.into(), answer).await {
                Ok(Ok(outcomes)) => Ok(outcomes),
                Ok(Err(_)) => Err(SinkError::Retriable(format!(
                    "plugin {path}: its threads have stopped"
                ))),
                Err(_) => {
                    stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(plugin = %path, ?timeout, "plugin call timed out");
                    Err(SinkError::Retriable(format!(
                        "plugin {path}: no answer within {}",
                        humantime_ms(timeout)
                    )))
                }
            }
        })
    }
}

/// `1.5s`, `300ms`: a duration as config files write it.
fn humantime_ms(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
