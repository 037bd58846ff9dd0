//! The `discovery` agent: answers `pong` to a body containing `ping` (Choria's
//! broadcast discovery and `choria ping`).

use super::{Agent, AgentMetadata, AgentRequest};

/// The discovery agent.
#[derive(Debug, Clone)]
pub struct Discovery {
    metadata: AgentMetadata,
}

impl Discovery {
    /// The agent with go-choria's metadata.
    pub fn new() -> Self {
        Discovery {
            metadata: AgentMetadata {
                license: "Apache-2.0".into(),
                author: "R.I.Pienaar <rip@devco.net>".into(),
                timeout: 2,
                name: "discovery".into(),
                version: crate::registration::VERSION.into(),
                url: "https://choria.io".into(),
                description: "Discovery Agent".into(),
                provider: "golang".into(),
                service: false,
            },
        }
    }
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery::new()
    }
}

impl Agent for Discovery {
    fn metadata(&self) -> &AgentMetadata {
        &self.metadata
    }

    fn handle(&self, request: &AgentRequest<'_>) -> Option<Vec<u8>> {
        // Go checks that the (base64-decoded) body contains "ping"; anything else gets
        // no answer.
        request
            .body
            .windows(4)
            .any(|w| w == b"ping")
            .then(|| b"pong".to_vec())
    }
}
