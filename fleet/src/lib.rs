//! Coro fleet: many simulated Choria servers in one process, speaking the real wire
//! protocol over NATS.
//!
//! Each simulated server is a [`Node`]: an identity, facts, classes, collectives and a
//! set of [`Agent`]s. A node subscribes to `<collective>.broadcast.agent.<agent>` for each
//! of its agents and to `<collective>.node.<identity>`, answers requests that pass its
//! security, TTL and filter checks, and publishes `inventory_content` registration at an
//! interval. A [`Fleet`] is just many nodes sharing a small pool of NATS connections;
//! every node keeps its own subscriptions, so the broker fans out to each node exactly
//! as it would to a real fleet.
//!
//! ```no_run
//! # async fn demo() -> Result<(), coro_fleet::FleetError> {
//! use coro_fleet::{Fleet, FleetConfig};
//! let cfg = FleetConfig {
//!     nodes: 1000,
//!     servers: vec!["nats://127.0.0.1:4222".into()],
//!     ..FleetConfig::default()
//! };
//! let fleet = Fleet::start(cfg).await?;
//! println!("{:?}", fleet.stats());
//! fleet.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The [`Node`] type does not depend on NATS: [`Node::handle`] turns one request payload
//! into an [`Outcome`], which is what an embedding server (or a unit test) needs.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agents;
mod error;
pub mod facts;
mod fleet;
pub mod ids;
mod node;
pub mod registration;
pub mod security;

pub use agents::{Agent, AgentMetadata, AgentRequest, AgentSet};
pub use error::FleetError;
pub use fleet::{Fleet, FleetConfig, FleetStats, StartPhase, StartProgress, NODES_PER_CONNECTION};
pub use node::{Invalid, Node, NodeSpec, NodeStats, Outcome};
pub use security::{ClientCredentials, Security};
