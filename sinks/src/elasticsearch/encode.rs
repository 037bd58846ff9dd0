//! Record to `_bulk` item: the action line (index, `_id`, op type, version) and the
//! document line, newline-terminated, ready to be appended to a request body.

use super::config::{IndexTemplate, Model};
use super::documents::{self, DocumentError};
use coro_core::protocol::Limits;
use coro_core::Record;
use serde::Serialize;

/// What encoding needs besides the record.
#[derive(Debug, Clone)]
pub struct Encoder {
    /// The document model.
    pub model: Model,
    /// The index name template.
    pub index: IndexTemplate,
    /// Gunzip limits for registration `zcontent`.
    pub limits: Limits,
}

/// One encoded bulk item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The index it goes to.
    pub index: String,
    /// Action and document lines, each ending in `\n`.
    pub lines: Vec<u8>,
}

#[derive(Serialize)]
struct Create<'a> {
    create: Target<'a>,
}

#[derive(Serialize)]
struct Index<'a> {
    index: Target<'a>,
}

#[derive(Serialize)]
struct Target<'a> {
    #[serde(rename = "_index")]
    index: &'a str,
    #[serde(rename = "_id")]
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_type: Option<&'static str>,
}

impl Encoder {
    /// The bulk item for `record`.
    pub fn item(&self, record: &Record) -> Result<Item, DocumentError> {
        // Dead letters of undecodable messages have no Choria time: stamp them now.
        let time_ns = if record.time_ns == 0 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i128)
        } else {
            record.time_ns
        };
        let time = time::OffsetDateTime::from_unix_timestamp_nanos(time_ns)
            .map_err(|_| DocumentError::Time(time_ns))?;
        let timestamp = documents::timestamp(time_ns)?;
        let index = self.index.name_for(record, Some(&time));
        let document = documents::document(self.model, record, &timestamp, &self.limits)?;
        let mut lines = Vec::with_capacity(document.len() + 160);
        match self.model {
            Model::Events => {
                let id = record.idempotency_key();
                let action = Create {
                    create: Target {
                        index: &index,
                        id: &id,
                        version: None,
                        version_type: None,
                    },
                };
                write_json(&mut lines, &action);
            }
            Model::Nodes => {
                // External versioning: Elasticsearch keeps the document with the highest
                // version, so the newest registration wins whatever order they arrive in.
                let version = i64::try_from(time_ns).map_err(|_| DocumentError::Time(time_ns))?;
                if version < 0 {
                    return Err(DocumentError::Time(time_ns));
                }
                let action = Index {
                    index: Target {
                        index: &index,
                        id: &record.sender,
                        version: Some(version),
                        version_type: Some("external"),
                    },
                };
                write_json(&mut lines, &action);
            }
        }
        lines.push(b'\n');
        lines.extend_from_slice(&document);
        lines.push(b'\n');
        Ok(Item { index, lines })
    }
}

fn write_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // Serializing these plain structs into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use coro_core::protocol::Version;
    use coro_core::Kind;

    fn record(kind: Kind, body: &str) -> Record {
        Record {
            subject: "mcollective.broadcast.agent.registration".into(),
            version: Version::V1,
            kind,
            sender: "node1.example.net".into(),
            request_id: "5b1d1e0f0b7a4b8f9c2d3e4f5a6b7c8d".into(),
            agent: "registration".into(),
            collective: Some("mcollective".into()),
            time_ns: 1_700_000_000_000_000_000,
            body: bytes::Bytes::from(body.to_string()),
            raw: bytes::Bytes::new(),
        }
    }

    fn encoder(model: Model, index: &str) -> Encoder {
        Encoder {
            model,
            index: IndexTemplate::parse(index),
            limits: Limits::DEFAULT,
        }
    }

    fn lines(item: &Item) -> (serde_json::Value, serde_json::Value) {
        let text = std::str::from_utf8(&item.lines).unwrap();
        assert!(text.ends_with('\n'));
        let mut it = text.lines();
        let action = serde_json::from_str(it.next().unwrap()).unwrap();
        let doc = serde_json::from_str(it.next().unwrap()).unwrap();
        assert!(it.next().is_none());
        (action, doc)
    }

    #[test]
    fn event_documents_are_created_once_by_idempotency_key() {
        let r = record(Kind::Reply, r#"{"statuscode":0,"data":{"pong":1}}"#);
        let item = encoder(Model::Events, "choria-{kind}-%Y.%m.%d")
            .item(&r)
            .unwrap();
        assert_eq!(item.index, "choria-reply-2023.11.14");
        let (action, doc) = lines(&item);
        assert_eq!(action["create"]["_id"], r.idempotency_key());
        assert_eq!(action["create"]["_index"], "choria-reply-2023.11.14");
        assert_eq!(doc["@timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(doc["body"]["data"]["pong"], 1);
        assert_eq!(doc["protocol_version"], 1);
        assert_eq!(doc["collective"], "mcollective");

        let (_, doc) = lines(
            &encoder(Model::Events, "e")
                .item(&record(Kind::Reply, "pong"))
                .unwrap(),
        );
        assert_eq!(doc["body_text"], "pong");
        assert!(doc.get("body").is_none());
        let mut binary = record(Kind::Reply, "");
        binary.body = bytes::Bytes::from_static(&[0xff, 0xfe]);
        let (_, doc) = lines(&encoder(Model::Events, "e").item(&binary).unwrap());
        assert_eq!(doc["body_base64"], "//4=");
    }

    #[test]
    fn node_documents_are_versioned_by_choria_time() {
        let body = r#"{"protocol":"choria:registration:inventorycontent:1","content":{"agents":[{"name":"rpcutil","version":"0.29.4"}],"classes":["role::web"],"facts":{"os":{"family":"Debian"}},"status":{"identity":"node1.example.net","uptime":5},"collectives":["mcollective"],"build_info":{"version":"0.29.4","sha":"x"},"machines":[]}}"#;
        let item = encoder(Model::Nodes, "choria-nodes")
            .item(&record(Kind::Registration, body))
            .unwrap();
        let (action, doc) = lines(&item);
        assert_eq!(
            action,
            serde_json::json!({"index":{"_index":"choria-nodes","_id":"node1.example.net","version":1_700_000_000_000_000_000i64,"version_type":"external"}})
        );
        assert_eq!(doc["identity"], "node1.example.net");
        assert_eq!(doc["last_seen"], "2023-11-14T22:13:20Z");
        assert_eq!(doc["stale"], false);
        assert_eq!(doc["facts"]["os"]["family"], "Debian");
        assert_eq!(doc["agents"][0]["version"], "0.29.4");
        assert_eq!(doc["classes"][0], "role::web");
        assert_eq!(doc["registration"]["compressed"], false);
        assert!(doc["registration"].get("invalid_fields").is_none());
    }

    #[test]
    fn gzip_and_file_content_registration() {
        let inventory = br#"{"facts":{"a":1},"classes":"not a list"}"#;
        let body = format!(
            r#"{{"protocol":"choria:registration:inventorycontent:1","zcontent":"{}"}}"#,
            coro_core::protocol::b64_encode(&coro_core::protocol::gzip(inventory))
        );
        let (_, doc) = lines(
            &encoder(Model::Nodes, "n")
                .item(&record(Kind::Registration, &body))
                .unwrap(),
        );
        assert_eq!(doc["facts"]["a"], 1);
        assert_eq!(doc["registration"]["compressed"], true);
        assert_eq!(doc["registration"]["invalid_fields"][0], "classes");
        assert!(doc.get("classes").is_none());

        let file = r#"{"mtime":1511865541,"file":"testdata/sample.json","updated":false,"protocol":"choria:registration:filecontent:1","content":"eyJmaWxlIjogdHJ1ZX0="}"#;
        let (_, doc) = lines(
            &encoder(Model::Nodes, "n")
                .item(&record(Kind::Registration, file))
                .unwrap(),
        );
        assert_eq!(doc["facts"]["file"], true);
        assert_eq!(doc["file"]["path"], "testdata/sample.json");
        assert!(doc["file"].get("content").is_none());
        let text = format!(
            r#"{{"file":"motd","protocol":"choria:registration:filecontent:1","content":"{}"}}"#,
            coro_core::protocol::b64_encode(b"hello")
        );
        let (_, doc) = lines(
            &encoder(Model::Nodes, "n")
                .item(&record(Kind::Registration, &text))
                .unwrap(),
        );
        assert_eq!(doc["file"]["content"], "hello");
        assert!(doc.get("facts").is_none());
    }

    #[test]
    fn nodes_refuse_what_is_not_registration() {
        let e = encoder(Model::Nodes, "n");
        assert!(matches!(
            e.item(&record(Kind::Reply, "{}")),
            Err(DocumentError::NotRegistration("reply"))
        ));
        assert!(matches!(
            e.item(&record(
                Kind::Registration,
                r#"{"protocol":"choria:registration:inventorycontent:1","zcontent":"!!"}"#
            )),
            Err(DocumentError::Registration(_))
        ));
    }
}
