//! The adapter runtime: for each `[[adapter]]`, connect ingest and sinks, assemble one
//! pipeline per sink, and run until told to stop; then drain.

pub mod jetstream_ingest;
pub mod metrics;
pub mod nats_ingest;
pub mod route;

use coro_core::config::adapters::{AdapterConfig, AdaptersConfig, IngestConfig};
use coro_core::pipeline::metrics::PipelineMetrics;
use coro_core::pipeline::{self, PipelineSettings};
use coro_core::sink::{Batch, Outcome, SinkError};
use coro_sinks::blackhole::BlackholeSink;
use coro_sinks::config::{AdapterSinks, SinkConfig};
use coro_sinks::elasticsearch::{ElasticsearchMetrics, ElasticsearchSink};
use coro_sinks::encoding::Encoding;
use coro_sinks::file::FileSink;
use coro_sinks::jetstream::JetStreamSink;
use coro_sinks::kafka::{KafkaMetrics, KafkaSink};
use coro_sinks::kinesis::{KinesisMetrics, KinesisSink};
use coro_sinks::plugin::PluginSink;
use coro_sinks::pubsub::{PubSubMetrics, PubSubSink};
use metrics::AdapterMetrics;
use route::Route;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::util::BoxCloneSyncService;

/// Why the adapters could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A NATS connection failed.
    #[error("adapter {adapter:?}: connecting to {servers:?}: {reason}")]
    Connect {
        /// The adapter.
        adapter: String,
        /// The servers tried.
        servers: Vec<String>,
        /// What went wrong.
        reason: String,
    },
    /// A sink could not be set up.
    #[error("adapter {adapter:?}: sink {sink:?}: {reason}")]
    Sink {
        /// The adapter.
        adapter: String,
        /// The sink.
        sink: String,
        /// What went wrong.
        reason: String,
    },
    /// The JetStream consumer could not be bound.
    #[error("adapter {adapter:?}: {source}")]
    Consumer {
        /// The adapter.
        adapter: String,
        /// What went wrong.
        source: jetstream_ingest::StartError,
    },
    /// Metrics could not be registered (a name clash).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Running adapters.
pub struct Adapters {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    connections: Vec<async_nats::Client>,
    /// The Elasticsearch sinks' metric families, registered once for all of them.
    elasticsearch: ElasticsearchMetrics,
    /// The Kafka sinks' metric families, registered once for all of them.
    kafka: KafkaMetrics,
    /// Every Kafka sink, to flush on shutdown what librdkafka still holds.
    kafka_sinks: Vec<KafkaSink>,
    /// The Kinesis sinks' metric families.
    kinesis: KinesisMetrics,
    /// The Pub/Sub sinks' metric families.
    pubsub: PubSubMetrics,
}

impl Adapters {
    /// Connects and starts every adapter in `config`, with its sinks as `sinks` typed
    /// them (one entry per adapter, in order, from `coro_sinks::config::load`),
    /// registering metrics in `registry`.
    pub async fn start(
        config: &AdaptersConfig,
        sinks: &[AdapterSinks],
        registry: &prometheus::Registry,
    ) -> Result<Adapters, StartError> {
        let adapter_metrics = AdapterMetrics::register(registry)?;
        let pipeline_metrics = PipelineMetrics::register(registry)?;
        let identity: Arc<str> = config.http.identity.as_str().into();
        let (stop, stopped) = watch::channel(false);
        let mut running = Adapters {
            stop,
            tasks: Vec::new(),
            connections: Vec::new(),
            elasticsearch: ElasticsearchMetrics::register(registry)?,
            kafka: KafkaMetrics::register(registry)?,
            kafka_sinks: Vec::new(),
            kinesis: KinesisMetrics::register(registry)?,
            pubsub: PubSubMetrics::register(registry)?,
        };
        for (adapter, typed) in config.adapters.iter().zip(sinks) {
            running
                .start_one(
                    adapter,
                    typed,
                    &identity,
                    &adapter_metrics,
                    &pipeline_metrics,
                    stopped.clone(),
                )
                .await?;
        }
        Ok(running)
    }

    async fn start_one(
        &mut self,
        adapter: &AdapterConfig,
        typed: &AdapterSinks,
        identity: &Arc<str>,
        adapter_metrics: &AdapterMetrics,
        pipeline_metrics: &PipelineMetrics,
        stopped: watch::Receiver<bool>,
    ) -> Result<(), StartError> {
        let mut sinks = Vec::new();
        for (name, sink) in &typed.sinks {
            let service = self.sink(&adapter.name, name, sink.clone(), None).await?;
            let metrics = pipeline_metrics.for_sink(&adapter.name, name);
            sinks.push((
                name.clone(),
                pipeline::build(&adapter.pipeline, service, metrics, sink.order()),
            ));
        }
        let dead_letter = match &typed.dead_letter {
            Some((name, sink)) => {
                // Dead letters are already the JSON documents to store, and must not be
                // filtered or reshaped away.
                let service = self
                    .sink(&adapter.name, name, sink.clone(), Some(Encoding::Raw))
                    .await?;
                let settings = PipelineSettings {
                    filter: Default::default(),
                    transform: Default::default(),
                    ..adapter.pipeline.clone()
                };
                // Its own label, so it never adds to a sink of the same name.
                let label = format!("dead_letter/{name}");
                let metrics = pipeline_metrics.for_sink(&adapter.name, &label);
                Some(pipeline::build(&settings, service, metrics, sink.order()))
            }
            None => None,
        };
        let workers = match &adapter.ingest {
            IngestConfig::Nats(n) => n.workers,
            IngestConfig::JetStream(_) => 1,
        };
        let route = Route::new(
            &adapter.name,
            identity,
            workers,
            adapter.pipeline.limits(),
            adapter.ingest.protocol(),
            sinks,
            dead_letter,
            adapter_metrics.clone(),
        );
        let client = self
            .connect(
                &adapter.name,
                adapter.ingest.servers(),
                &format!("choria adapter {}", adapter.name),
                Some((adapter_metrics, subscription_capacity(&adapter.ingest))),
            )
            .await?;
        let task = match &adapter.ingest {
            IngestConfig::Nats(nats) => tokio::spawn(nats_ingest::run(
                nats.clone(),
                client,
                route,
                adapter_metrics.clone(),
                identity.clone(),
                stopped,
            )),
            IngestConfig::JetStream(js) => {
                let messages = jetstream_ingest::consumer(js, client)
                    .await
                    .map_err(|source| StartError::Consumer {
                        adapter: adapter.name.clone(),
                        source,
                    })?;
                tokio::spawn(jetstream_ingest::run(
                    js.clone(),
                    messages,
                    route,
                    adapter_metrics.clone(),
                    stopped,
                ))
            }
        };
        self.tasks.push(task);
        Ok(())
    }

    /// Builds the sink service `sink` of `adapter`; `encoding` overrides the configured
    /// one.
    async fn sink(
        &mut self,
        adapter: &str,
        sink: &str,
        config: SinkConfig,
        encoding: Option<Encoding>,
    ) -> Result<SinkService, StartError> {
        let error = |reason: String| StartError::Sink {
            adapter: adapter.to_string(),
            sink: sink.to_string(),
            reason,
        };
        Ok(match config {
            SinkConfig::Blackhole(_) => BoxCloneSyncService::new(BlackholeSink::new()),
            SinkConfig::Elasticsearch(es) => {
                // Documents have their own shape (the model); `encoding` does not apply.
                let metrics = self.elasticsearch.for_sink(adapter, sink);
                BoxCloneSyncService::new(
                    ElasticsearchSink::connect(es, metrics)
                        .await
                        .map_err(|e| error(e.to_string()))?,
                )
            }
            SinkConfig::File(mut file) => {
                if let Some(encoding) = encoding {
                    file.encoding = encoding;
                }
                BoxCloneSyncService::new(FileSink::open(file).map_err(|e| error(e.to_string()))?)
            }
            SinkConfig::JetStream(mut js) => {
                if let Some(encoding) = encoding {
                    js.encoding = encoding;
                }
                let name = format!("{adapter}_{sink}");
                let client = self.connect(adapter, &js.servers, &name, None).await?;
                BoxCloneSyncService::new(JetStreamSink::with_client(client, js))
            }
            SinkConfig::Kafka(mut kafka) => {
                if let Some(encoding) = encoding {
                    kafka.encoding = encoding;
                }
                // Only the dead letter overrides the encoding; label it as the
                // pipeline metrics do, so it never adds to a sink of the same name.
                let label = match encoding {
                    Some(_) => format!("dead_letter/{sink}"),
                    None => sink.to_string(),
                };
                let metrics = self.kafka.for_sink(adapter, &label);
                let client = format!("coro.{adapter}.{sink}");
                let service = KafkaSink::with_metrics(kafka, &client, metrics)
                    .map_err(|e| error(e.to_string()))?;
                self.kafka_sinks.push(service.clone());
                BoxCloneSyncService::new(service)
            }
            SinkConfig::Kinesis(mut kinesis) => {
                if let Some(encoding) = encoding {
                    kinesis.encoding = encoding;
                }
                let label = match encoding {
                    Some(_) => format!("dead_letter/{sink}"),
                    None => sink.to_string(),
                };
                let metrics = self.kinesis.for_sink(adapter, &label);
                BoxCloneSyncService::new(
                    KinesisSink::connect(kinesis, Some(metrics))
                        .await
                        .map_err(|e| error(e.to_string()))?,
                )
            }
            SinkConfig::PubSub(mut pubsub) => {
                if let Some(encoding) = encoding {
                    pubsub.encoding = encoding;
                }
                let label = match encoding {
                    Some(_) => format!("dead_letter/{sink}"),
                    None => sink.to_string(),
                };
                let metrics = self.pubsub.for_sink(adapter, &label);
                BoxCloneSyncService::new(
                    PubSubSink::connect(pubsub, Some(metrics))
                        .await
                        .map_err(|e| error(e.to_string()))?,
                )
            }
            SinkConfig::Plugin(mut plugin) => {
                if let Some(encoding) = encoding {
                    plugin.encoding = encoding;
                }
                BoxCloneSyncService::new(
                    PluginSink::open(plugin)
                        .await
                        .map_err(|e| error(e.to_string()))?,
                )
            }
        })
    }

    /// Connects to NATS, counting slow-consumer drops for the adapter.
    async fn connect(
        &mut self,
        adapter: &str,
        servers: &[String],
        name: &str,
        ingest: Option<(&AdapterMetrics, usize)>,
    ) -> Result<async_nats::Client, StartError> {
        let error = |reason: String| StartError::Connect {
            adapter: adapter.to_string(),
            servers: servers.to_vec(),
            reason,
        };
        let addrs = coro_sinks::nats::servers(servers).map_err(error)?;
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5));
        if let Some((m, capacity)) = ingest {
            // Bound what the client buffers per subscription: the default (65536
            // messages) would let a stalled adapter hold 64 MiB of 1 KiB messages per
            // worker. Overflow is a slow consumer, counted below.
            options = options.subscription_capacity(capacity);
            let slow = m.dropped.with_label_values(&[adapter, "slow_consumer"]);
            let adapter = adapter.to_string();
            options = options.event_callback(move |event| {
                let slow = slow.clone();
                let adapter = adapter.clone();
                async move {
                    match event {
                        async_nats::Event::SlowConsumer(_) => slow.inc(),
                        async_nats::Event::Disconnected => {
                            tracing::warn!(adapter, "NATS disconnected")
                        }
                        async_nats::Event::Connected => tracing::info!(adapter, "NATS connected"),
                        other => tracing::debug!(adapter, "NATS event: {other}"),
                    }
                }
            });
        }
        let client = options
            .connect(addrs)
            .await
            .map_err(|e| error(e.to_string()))?;
        self.connections.push(client.clone());
        Ok(client)
    }

    /// A cheap handle that says whether every NATS connection (ingest and sinks) is up.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            connections: self.connections.clone(),
            checks: Vec::new(),
            health: Vec::new(),
        }
    }

    /// Stops taking messages and waits up to `deadline` for what is in flight to be
    /// delivered and acknowledged. Returns whether everything finished in time.
    pub async fn shutdown(self, deadline: Duration) -> bool {
        let _ = self.stop.send(true);
        let started = tokio::time::Instant::now();
        let all = futures::future::join_all(self.tasks);
        let mut finished = tokio::time::timeout(deadline, all).await.is_ok();
        // Kafka: what librdkafka still holds gets the rest of the deadline to be
        // delivered; dropping a producer purges its queue.
        let rest = deadline.saturating_sub(started.elapsed());
        let flushes = self.kafka_sinks.iter().map(|sink| sink.flush(rest));
        for result in futures::future::join_all(flushes).await {
            if let Err(e) = result {
                tracing::warn!("kafka: records left undelivered at shutdown: {e}");
                finished = false;
            }
        }
        for client in &self.connections {
            // Flush acks and publishes still buffered in the client.
            let _ = client.flush().await;
        }
        finished
    }
}

/// Answers whether the adapters' connections are up, and whatever else was added with
/// [`and`](Self::and); clone freely. The default has nothing to wait for: it is ready.
#[derive(Clone, Default)]
pub struct Readiness {
    connections: Vec<async_nats::Client>,
    checks: Vec<ReadyCheck>,
    health: Vec<HealthCheck>,
}

/// One more thing that must hold to be ready.
type ReadyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// One more thing `/healthz` reports: `Err` with what is wrong.
type HealthCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

impl Readiness {
    /// Whether every NATS connection is up and every added check holds.
    pub fn ready(&self) -> bool {
        self.connections
            .iter()
            .all(|c| c.connection_state() == async_nats::connection::State::Connected)
            && self.checks.iter().all(|check| check())
    }

    /// Ready only when `check` holds too (e.g. the network broker's nats-server runs).
    /// It is called on every `/readyz`, so it must be cheap and not block.
    pub fn and(mut self, check: impl Fn() -> bool + Send + Sync + 'static) -> Readiness {
        self.checks.push(Arc::new(check));
        self
    }

    /// `/healthz` fails while `check` says what is wrong (e.g. a side of the
    /// federation broker that lost its connections). Called on every `/healthz`: cheap,
    /// never blocking.
    pub fn and_healthy(
        mut self,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Readiness {
        self.health.push(Arc::new(check));
        self
    }

    /// What the added health checks find wrong, one line each; empty when healthy.
    pub fn unhealthy(&self) -> Vec<String> {
        self.health
            .iter()
            .filter_map(|check| check().err())
            .collect()
    }
}

/// Messages each ingest subscription may buffer in the client. Core NATS workers share
/// the adapter's `queue_len` (at least 100 each), so memory follows the one setting; a
/// JetStream pull needs room for two fetches.
fn subscription_capacity(ingest: &IngestConfig) -> usize {
    match ingest {
        IngestConfig::Nats(n) => (n.queue_len / n.workers.max(1)).max(100),
        IngestConfig::JetStream(j) => (2 * j.fetch_batch).max(1000),
    }
}

/// Any sink behind one cloneable type, so every adapter's pipelines have one shape.
type SinkService = BoxCloneSyncService<Batch, Vec<Outcome>, SinkError>;
