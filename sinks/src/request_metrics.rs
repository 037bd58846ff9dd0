//! The metric families of a sink that answers each record from a request to a
//! service (Kinesis, Pub/Sub): errors by code and outcome, request times, requests.
//! Each sink names its families through [`Names`].

use coro_core::sink::Outcome;
use prometheus::{exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::marker::PhantomData;

/// A sink's metric names and help texts, as `(name, help)`.
pub trait Names {
    /// Records not accepted, labelled adapter, sink, error, outcome.
    const ERRORS: (&'static str, &'static str);
    /// Histogram of request times, labelled adapter, sink.
    const SECONDS: (&'static str, &'static str);
    /// Requests made, labelled adapter, sink.
    const REQUESTS: (&'static str, &'static str);
}

/// The metric families, registered once per registry.
#[derive(Debug)]
pub struct RequestMetrics<N> {
    errors: IntCounterVec,
    seconds: HistogramVec,
    requests: IntCounterVec,
    names: PhantomData<N>,
}

// By hand: a derive would ask the name marker to be Clone too.
impl<N> Clone for RequestMetrics<N> {
    fn clone(&self) -> Self {
        RequestMetrics {
            errors: self.errors.clone(),
            seconds: self.seconds.clone(),
            requests: self.requests.clone(),
            names: PhantomData,
        }
    }
}

impl<N: Names> RequestMetrics<N> {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.seconds.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        Ok(m)
    }

    /// The families, registered nowhere (tests, benchmarks).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        let labels = &["adapter", "sink"];
        Ok(RequestMetrics {
            errors: IntCounterVec::new(
                Opts::new(N::ERRORS.0, N::ERRORS.1),
                &["adapter", "sink", "error", "outcome"],
            )?,
            seconds: HistogramVec::new(
                HistogramOpts::new(N::SECONDS.0, N::SECONDS.1)
                    .buckets(exponential_buckets(0.0005, 2.0, 18)?),
                labels,
            )?,
            requests: IntCounterVec::new(Opts::new(N::REQUESTS.0, N::REQUESTS.1), labels)?,
            names: PhantomData,
        })
    }

    /// The metrics of one sink of one adapter.
    pub fn for_sink(&self, adapter: &str, sink: &str) -> SinkMetrics {
        let labels = [adapter, sink];
        SinkMetrics {
            errors: self.errors.clone(),
            seconds: self.seconds.with_label_values(&labels),
            requests: self.requests.with_label_values(&labels),
            adapter: adapter.to_string(),
            sink: sink.to_string(),
        }
    }
}

/// One sink's metrics with their labels bound.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    errors: IntCounterVec,
    pub(crate) seconds: prometheus::Histogram,
    pub(crate) requests: prometheus::IntCounter,
    adapter: String,
    sink: String,
}

impl SinkMetrics {
    /// Counts a record that was not accepted: its error code and what became of it.
    pub(crate) fn error(&self, code: &str, outcome: &Outcome) {
        let outcome = match outcome {
            Outcome::Reject { .. } => "reject",
            _ => "retry",
        };
        self.errors
            .with_label_values(&[self.adapter.as_str(), self.sink.as_str(), code, outcome])
            .inc();
    }
}
