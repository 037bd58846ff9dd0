//! Transform: reshape a record's body before it is batched.
//!
//! * `gunzip_registration`: registration payloads sent with gzip `zcontent` are rewritten
//!   with plain `content` (file content stays base64, inventory becomes the embedded
//!   JSON object), so sinks such as Elasticsearch can index them.
//! * `pick` / `rename`: keep only some top-level keys of a JSON body, and rename keys.
//!
//! A body the transform cannot handle is answered [`Outcome::Reject`] with the reason.

use crate::gojson;
use crate::protocol::registration::Registration;
use crate::protocol::{b64_encode, Limits};
use crate::sink::Outcome;
use crate::{Kind, Record};
use bytes::Bytes;
use futures::future::{self, Either, Ready};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// What to change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformRules {
    /// Replace registration `zcontent` with plain `content`.
    #[serde(default)]
    pub gunzip_registration: bool,
    /// Keep only these top-level keys of a JSON object body (after renaming).
    #[serde(default)]
    pub pick: Vec<String>,
    /// Rename top-level keys of a JSON object body: `{ old = "new" }`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Limits for the gunzip.
    #[serde(skip)]
    pub limits: Limits,
}

impl TransformRules {
    /// Whether the rules change nothing.
    pub fn is_empty(&self) -> bool {
        !self.gunzip_registration && self.pick.is_empty() && self.rename.is_empty()
    }

    /// Applies the rules to `record`'s body.
    pub fn apply(&self, mut record: Record) -> Result<Record, String> {
        if self.gunzip_registration && record.kind == Kind::Registration {
            record.body = gunzip_registration(&record.body, &self.limits)?;
        }
        if !self.pick.is_empty() || !self.rename.is_empty() {
            record.body = self.reshape(&record.body)?;
        }
        Ok(record)
    }

    fn reshape(&self, body: &[u8]) -> Result<Bytes, String> {
        let serde_json::Value::Object(object) = serde_json::from_slice(body)
            .map_err(|e| format!("transform: body is not JSON: {e}"))?
        else {
            return Err("transform: body is not a JSON object".into());
        };
        let mut out = serde_json::Map::new();
        for (key, value) in object {
            let key = self.rename.get(&key).cloned().unwrap_or(key);
            if self.pick.is_empty() || self.pick.contains(&key) {
                out.insert(key, value);
            }
        }
        Ok(Bytes::from(gojson::to_vec(&out)))
    }
}

/// Rewrites a registration payload's `zcontent` as `content`; other bodies pass as they
/// are.
fn gunzip_registration(body: &Bytes, limits: &Limits) -> Result<Bytes, String> {
    let Ok(registration) = Registration::decode(body) else {
        return Ok(body.clone());
    };
    if !registration.is_compressed() {
        return Ok(body.clone());
    }
    let content = registration
        .content(limits)
        .map_err(|e| format!("transform: {e}"))?;
    let out = match registration {
        Registration::FileContent(mut f) => {
            f.content = b64_encode(&content);
            f.zcontent.clear();
            gojson::to_vec(&f)
        }
        Registration::InventoryContent(mut i) => {
            let text = String::from_utf8(content)
                .map_err(|_| "transform: registration: inventory is not UTF-8".to_string())?;
            let raw = serde_json::value::RawValue::from_string(text)
                .map_err(|e| format!("transform: registration: inventory is not JSON: {e}"))?;
            i.content = Some(raw);
            i.zcontent.clear();
            gojson::to_vec(&i)
        }
    };
    Ok(Bytes::from(out))
}

/// Applies [`TransformRules`].
#[derive(Debug, Clone)]
pub struct TransformLayer {
    rules: Arc<TransformRules>,
}

impl TransformLayer {
    /// A transform layer with `rules`.
    pub fn new(rules: TransformRules) -> Self {
        TransformLayer {
            rules: Arc::new(rules),
        }
    }
}

impl<S> Layer<S> for TransformLayer {
    type Service = Transform<S>;

    fn layer(&self, inner: S) -> Transform<S> {
        Transform {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// The transform service; see [`TransformLayer`].
#[derive(Debug, Clone)]
pub struct Transform<S> {
    inner: S,
    rules: Arc<TransformRules>,
}

impl<S> Service<Record> for Transform<S>
where
    S: Service<Record, Response = Outcome>,
{
    type Response = Outcome;
    type Error = S::Error;
    type Future = Either<Ready<Result<Outcome, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, record: Record) -> Self::Future {
        match self.rules.apply(record) {
            Ok(record) => Either::Right(self.inner.call(record)),
            Err(reason) => Either::Left(future::ready(Ok(Outcome::reject(reason)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{gzip, Version};

    fn registration(body: String) -> Record {
        Record {
            subject: "s".into(),
            version: Version::V1,
            kind: Kind::Registration,
            sender: "n".into(),
            request_id: "r".into(),
            agent: "registration".into(),
            collective: None,
            time_ns: 0,
            body: Bytes::from(body),
            raw: Bytes::new(),
        }
    }

    #[test]
    fn gunzips_file_and_inventory_content() {
        let rules = TransformRules {
            gunzip_registration: true,
            ..Default::default()
        };
        let file = format!(
            r#"{{"mtime":1,"file":"/f","updated":false,"protocol":"choria:registration:filecontent:1","zcontent":"{}"}}"#,
            b64_encode(&gzip(b"country: mt\n"))
        );
        let out = rules.apply(registration(file)).unwrap();
        assert_eq!(
            out.body,
            r#"{"mtime":1,"file":"/f","updated":false,"protocol":"choria:registration:filecontent:1","content":"Y291bnRyeTogbXQK"}"#
        );
        let inv = format!(
            r#"{{"protocol":"choria:registration:inventorycontent:1","zcontent":"{}"}}"#,
            b64_encode(&gzip(br#"{"facts":{"a":1}}"#))
        );
        let out = rules.apply(registration(inv)).unwrap();
        assert_eq!(
            out.body,
            r#"{"protocol":"choria:registration:inventorycontent:1","content":{"facts":{"a":1}}}"#
        );
        let bomb = format!(
            r#"{{"protocol":"choria:registration:inventorycontent:1","zcontent":"{}"}}"#,
            b64_encode(&gzip(&vec![b' '; 4096]))
        );
        let small = TransformRules {
            limits: Limits {
                max_gunzip: 1024,
                ..Limits::DEFAULT
            },
            ..rules
        };
        assert_eq!(
            small.apply(registration(bomb)).unwrap_err(),
            "transform: registration: gzip output is over the 1024 byte limit"
        );
    }

    #[test]
    fn picks_and_renames() {
        let rules = TransformRules {
            pick: vec!["status".into(), "data".into()],
            rename: [("statuscode".to_string(), "status".to_string())].into(),
            ..Default::default()
        };
        let out = rules
            .apply(registration(
                r#"{"action":"ping","statuscode":0,"data":{"x":"<"}}"#.into(),
            ))
            .unwrap();
        assert_eq!(out.body, r#"{"data":{"x":"\u003c"},"status":0}"#);
        assert_eq!(
            rules
                .apply(registration("pong".into()))
                .unwrap_err()
                .split(':')
                .take(2)
                .collect::<Vec<_>>(),
            ["transform", " body is not JSON"]
        );
    }
}
