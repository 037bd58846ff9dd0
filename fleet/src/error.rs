//! Errors of starting and running a fleet.

/// Why a fleet (or part of one) could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The configuration cannot work, e.g. zero nodes or no servers.
    #[error("invalid fleet config: {0}")]
    Config(String),
    /// A NATS connection could not be made.
    #[error("connecting to {server}: {reason}")]
    Connect {
        /// The server list tried.
        server: String,
        /// What the client said.
        reason: String,
    },
    /// A node's subscription could not be made.
    #[error("subscribing {subject}: {reason}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What the client said.
        reason: String,
    },
    /// Keys, certificates or tokens could not be made.
    #[error("security setup: {0}")]
    Security(String),
    /// A task that set up nodes failed.
    #[error("starting nodes: {0}")]
    Start(String),
}
