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

/// What a node knows about itself, for matching filters the way a Choria server does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    /// The node's identity.
    pub identity: String,
    /// Agents the node runs.
    pub agents: Vec<String>,
    /// Configuration management classes applied to the node.
    pub classes: Vec<String>,
    /// The node's facts as a JSON object (nested facts are reached with dotted paths).
    pub facts: serde_json::Value,
}

impl Filter {
    /// Whether a node with `node`'s identity, agents, classes and facts would act on a
    /// request with this filter (go-choria `MatchServerRequest`). Every category present
    /// must match: identities any of, agents/classes/facts all of. Compound expressions
    /// need Choria's expression language and data plugins, which only servers have, so
    /// a filter with one gives an error rather than a guess.
    pub fn matches(&self, node: &NodeInfo) -> Result<bool, FilterError> {
        if !self.compound.is_empty() {
            return Err(FilterError::Compound);
        }
        if !self.identity.is_empty()
            && !self
                .identity
                .iter()
                .any(|i| identity_matches(i, &node.identity))
        {
            return Ok(false);
        }
        for agent in &self.agent {
            let hit = match regex_of(agent, false)? {
                Some(re) => node.agents.iter().any(|a| re.is_match(a)),
                None => node.agents.iter().any(|a| a == agent),
            };
            if !hit {
                return Ok(false);
            }
        }
        for class in &self.cf_class {
            let hit = match regex_of(class, true)? {
                Some(re) => node.classes.iter().any(|c| re.is_match(c)),
                None => {
                    let wanted = class.to_lowercase();
                    node.classes.contains(&wanted)
                }
            };
            if !hit {
                return Ok(false);
            }
        }
        for fact in &self.fact {
            if !fact.matches(&node.facts)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// `/re/` is a regular expression; anything else is an exact name.
fn regex_of(needle: &str, case_insensitive: bool) -> Result<Option<regex::Regex>, FilterError> {
    let Some(inner) = needle
        .strip_prefix('/')
        .and_then(|rest| rest.strip_suffix('/'))
    else {
        return Ok(None);
    };
    let pattern = if case_insensitive {
        format!("(?i){inner}")
    } else {
        inner.to_string()
    };
    regex::Regex::new(&pattern)
        .map(Some)
        .map_err(|e| FilterError::Regex(needle.to_string(), e.to_string()))
}

fn identity_matches(needle: &str, identity: &str) -> bool {
    match regex_of(needle, false) {
        Ok(Some(re)) if re.is_match(identity) => true,
        _ => needle == identity,
    }
}

impl FactFilter {
    /// Compares the fact at the dotted path `fact` with `value`: strings compare without
    /// case, numbers numerically (as floats when `value` has a `.`), booleans by truth;
    /// `=~` is a case-insensitive regular expression. A missing fact never matches.
    pub fn matches(&self, facts: &serde_json::Value) -> Result<bool, FilterError> {
        use serde_json::Value;
        let Some(found) = self.fact.split('.').try_fold(facts, |v, key| v.get(key)) else {
            return Ok(false);
        };
        let op = self.operator.as_str();
        if op == "=~" {
            let pattern = self.value.trim_start_matches('/').trim_end_matches('/');
            let re = regex::Regex::new(&format!("(?i){pattern}"))
                .map_err(|e| FilterError::Regex(self.value.clone(), e.to_string()))?;
            return Ok(match found {
                Value::String(s) => re.is_match(s),
                Value::Number(n) => re.is_match(&number_text(n, &self.value)),
                Value::Bool(b) => *b && parse_bool(&self.value) == Some(true),
                _ => false,
            });
        }
        let ordering = match found {
            Value::String(s) => Some(s.to_lowercase().cmp(&self.value.to_lowercase())),
            Value::Number(n) => {
                let (Some(have), Ok(want)) = (n.as_f64(), self.value.parse::<f64>()) else {
                    return Ok(false);
                };
                have.partial_cmp(&want)
            }
            Value::Bool(b) => match (op, parse_bool(&self.value)) {
                ("==", Some(want)) => return Ok(*b == want),
                ("!=", Some(want)) => return Ok(*b != want),
                _ => return Ok(false),
            },
            _ => return Ok(false),
        };
        let Some(ordering) = ordering else {
            return Ok(false);
        };
        use std::cmp::Ordering::{Equal, Greater, Less};
        Ok(match op {
            "==" => ordering == Equal,
            "!=" => ordering != Equal,
            "<" => ordering == Less,
            "<=" => ordering != Greater,
            ">" => ordering == Greater,
            ">=" => ordering != Less,
            other => return Err(FilterError::Operator(other.to_string())),
        })
    }
}

/// Go formats numeric facts for `=~` as `%.4f` when the pattern has a `.`, else as an
/// integer.
fn number_text(n: &serde_json::Number, pattern: &str) -> String {
    let f = n.as_f64().unwrap_or_default();
    if pattern.contains('.') {
        format!("{f:.4}")
    } else {
        format!("{}", f.trunc())
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
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
    /// A `/regex/` that does not compile.
    #[error("invalid regular expression {0}: {1}")]
    Regex(String, String),
    /// Compound filters are evaluated by Choria servers only.
    #[error("compound filters need Choria's expression language, which only servers evaluate")]
    Compound,
}
