//! The composable index template Coro installs for a sink's indices, and the online
//! check `coro validate --online` makes of it.
//!
//! The template carries `_meta.coro_template`, a hash of everything else in it, so a
//! check compares one value to know whether the installed template is the one this
//! configuration would install.

use super::config::{ElasticsearchConfig, Model};
use super::documents;
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// An index template ready to be installed.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexTemplateSpec {
    /// The template's name.
    pub name: String,
    /// The index pattern it applies to.
    pub pattern: String,
    /// Hash of the template without `_meta`.
    pub hash: String,
    /// The body of `PUT /_index_template/<name>`.
    pub body: Value,
}

impl IndexTemplateSpec {
    /// The template `config` needs.
    pub fn for_config(config: &ElasticsearchConfig) -> IndexTemplateSpec {
        let pattern = config.index_template().pattern();
        let mut settings = serde_json::Map::new();
        if let Some(n) = config.number_of_shards {
            settings.insert("number_of_shards".into(), json!(n));
        }
        if let Some(n) = config.number_of_replicas {
            settings.insert("number_of_replicas".into(), json!(n));
        }
        let mut body = json!({
            "index_patterns": [pattern],
            "priority": config.template_priority,
            "template": {
                "settings": settings,
                "mappings": documents::mappings(config.model, config.body),
            },
        });
        if config.data_stream && config.model == Model::Events {
            body["data_stream"] = json!({});
        }
        let hash = hex::encode(&Sha256::digest(body.to_string().as_bytes())[..12]);
        body["_meta"] = json!({
            "managed_by": "coro",
            "model": config.model.as_str(),
            "coro_template": hash,
        });
        IndexTemplateSpec {
            name: config.template_name(),
            pattern,
            hash,
            body,
        }
    }

    /// `PUT /_index_template/<name>`: creates or replaces it (idempotent).
    pub async fn install(&self, client: &Elasticsearch) -> Result<(), String> {
        let path = format!("/_index_template/{}", self.name);
        let response = client
            .send(
                Method::Put,
                &path,
                HeaderMap::new(),
                None::<&()>,
                Some(self.body.to_string()),
                None,
            )
            .await
            .map_err(|e| format!("installing index template {}: {e}", self.name))?;
        let status = response.status_code();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(format!(
            "installing index template {}: HTTP {status}: {}",
            self.name,
            short(&text)
        ))
    }

    /// What the server has: the template and the mappings of existing indices it
    /// covers. `Ok` lines are fine, `Err` lines are problems.
    pub async fn check(
        &self,
        client: &Elasticsearch,
        config: &ElasticsearchConfig,
    ) -> Vec<Result<String, String>> {
        let mut out = Vec::new();
        let installed = get_json(client, &format!("/_index_template/{}", self.name)).await;
        let managed = if config.install_template {
            "coro installs it at start"
        } else {
            "install_template = false: create it, or set install_template = true"
        };
        match installed {
            Err(e) => {
                out.push(Err(e));
                return out;
            }
            Ok(None) if config.install_template => out.push(Ok(format!(
                "index template {} does not exist yet; {managed}",
                self.name
            ))),
            Ok(None) => out.push(Err(format!(
                "index template {} does not exist; {managed}",
                self.name
            ))),
            Ok(Some(doc)) => {
                let found = doc["index_templates"]
                    .as_array()
                    .and_then(|a| a.iter().find(|t| t["name"] == self.name.as_str()))
                    .map(|t| &t["index_template"]);
                let hash = found.and_then(|t| t["_meta"]["coro_template"].as_str());
                match hash {
                    Some(h) if h == self.hash => out.push(Ok(format!(
                        "index template {} is installed and matches ({} for {})",
                        self.name,
                        config.model.as_str(),
                        self.pattern
                    ))),
                    _ if config.install_template => out.push(Ok(format!(
                        "index template {} differs from this configuration's; coro replaces it at start (indices that exist keep their mappings)",
                        self.name
                    ))),
                    _ => out.push(Err(format!(
                        "index template {} differs from this configuration's; {managed}",
                        self.name
                    ))),
                }
            }
        }
        match get_json(
            client,
            &format!(
                "/{}/_mapping?ignore_unavailable=true&allow_no_indices=true",
                self.pattern
            ),
        )
        .await
        {
            Err(e) => out.push(Err(e)),
            Ok(None) => {}
            Ok(Some(Value::Object(indices))) => {
                for (index, mapping) in indices {
                    let properties = &mapping["mappings"]["properties"];
                    for (field, want) in key_fields(config) {
                        let got = properties[field]["type"].as_str().unwrap_or(
                            if properties[field].is_object() {
                                "object"
                            } else {
                                "missing"
                            },
                        );
                        if got != want {
                            out.push(Err(format!(
                                "index {index} exists with `{field}` mapped as {got}, not {want}: it was made without this template; reindex it or delete it"
                            )));
                        }
                    }
                }
            }
            Ok(Some(_)) => {}
        }
        out
    }
}

/// The fields whose mapping matters most, and the type each must have.
fn key_fields(config: &ElasticsearchConfig) -> Vec<(&'static str, &'static str)> {
    match config.model {
        Model::Nodes => vec![
            ("identity", "keyword"),
            ("last_seen", "date"),
            ("facts", "flattened"),
        ],
        Model::Events => vec![
            ("@timestamp", "date"),
            (
                "body",
                match config.body {
                    super::config::BodyMapping::Object => "object",
                    super::config::BodyMapping::Flattened => "flattened",
                },
            ),
        ],
    }
}

/// `GET path` as JSON; `None` for 404.
async fn get_json(client: &Elasticsearch, path: &str) -> Result<Option<Value>, String> {
    let response = client
        .send(
            Method::Get,
            path,
            HeaderMap::new(),
            None::<&()>,
            None::<()>,
            None,
        )
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = response.status_code();
    if status.as_u16() == 404 {
        return Ok(None);
    }
    let text = response
        .text()
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {path}: HTTP {status}: {}", short(&text)));
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("GET {path}: not JSON ({e})"))
}

/// At most 300 characters of `text`, for error messages.
pub(crate) fn short(text: &str) -> String {
    let mut t: String = text.chars().take(300).collect();
    if t.len() < text.len() {
        t.push('…');
    }
    t
}
