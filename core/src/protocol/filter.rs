//! The request filter (`protocol/filter.go`), shared by v1 and v2 requests.

use super::codec::null_as_default;
use serde::{Deserialize, Serialize};

/// Which nodes should act on a request. Go always emits all five keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// Fact comparisons, all of which must match.
    #[serde(default, deserialize_with = "null_as_default")]
    pub fact: Vec<FactFilter>,
    /// Configuration management classes the node must have.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cf_class: Vec<String>,
    /// Agents the node must have.
    #[serde(default, deserialize_with = "null_as_default")]
    pub agent: Vec<String>,
    /// Identities (or `/regex/`) the node must match.
    #[serde(default, deserialize_with = "null_as_default")]
    pub identity: Vec<String>,
    /// Compound expressions: `[[{"expr": "..."}]]` in Go, plain strings in the published
    /// schema. Kept as JSON values; Go sorts map keys, as serde_json does.
    #[serde(default, deserialize_with = "null_as_default")]
    pub compound: Vec<serde_json::Value>,
}

/// One fact comparison, e.g. `country == mt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactFilter {
    /// Fact name, dotted for nested facts.
    pub fact: String,
    /// One of `>= <= < > != == =~`.
    pub operator: String,
    /// The value to compare with.
    pub value: String,
}

impl Filter {
    /// True when no key restricts the request (it goes to every node).
    pub fn is_empty(&self) -> bool {
        self.fact.is_empty()
            && self.cf_class.is_empty()
            && self.agent.is_empty()
            && self.identity.is_empty()
            && self.compound.is_empty()
    }

    /// Adds an agent restriction unless it is empty or already present.
    pub fn add_agent(&mut self, agent: &str) {
        if !agent.is_empty() && !self.agent.iter().any(|a| a == agent) {
            self.agent.push(agent.to_string());
        }
    }

    /// Adds an identity restriction unless it is already present.
    pub fn add_identity(&mut self, identity: &str) {
        if !self.identity.iter().any(|i| i == identity) {
            self.identity.push(identity.to_string());
        }
    }

    /// Adds a class restriction unless it is already present.
    pub fn add_class(&mut self, class: &str) {
        if !self.cf_class.iter().any(|c| c == class) {
            self.cf_class.push(class.to_string());
        }
    }

    /// Adds a fact comparison; the operator must be one of `>= <= < > != == =~`.
    pub fn add_fact(&mut self, fact: &str, operator: &str, value: &str) -> Result<(), FilterError> {
        if !FACT_OPERATORS.contains(&operator) {
            return Err(FilterError::Operator(operator.to_string()));
        }
        self.fact.push(FactFilter {
            fact: fact.to_string(),
            operator: operator.to_string(),
            value: value.to_string(),
        });
        Ok(())
    }

    /// Adds a compound expression in Go's `[{"expr": ...}]` form; an empty one is ignored.
    pub fn add_compound(&mut self, expr: &str) {
        if !expr.is_empty() {
            self.compound.push(serde_json::json!([{ "expr": expr }]));
        }
    }
}

/// The fact comparison operators Choria accepts.
pub const FACT_OPERATORS: [&str; 7] = [">=", "<=", "<", ">", "!=", "==", "=~"];

/// A filter that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// An operator outside [`FACT_OPERATORS`].
    #[error("{0} is not a valid fact operator")]
    Operator(String),
}
