//! Registration payloads carried in request bodies (PROTOCOL.md §5.5):
//! `choria:registration:filecontent:1` and `choria:registration:inventorycontent:1`,
//! with plain `content` or gzip `zcontent`.

use super::codec::{b64_decode, gunzip, is_empty, parse, Limits};
use super::error::{DecodeError, Layer, Reason};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `choria:registration:filecontent:1`
pub const FILE_CONTENT: &str = "choria:registration:filecontent:1";
/// `choria:registration:inventorycontent:1`
pub const INVENTORY_CONTENT: &str = "choria:registration:inventorycontent:1";

/// A file's content, published by the `file_content` provider. Fields in Go's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileContent {
    /// The file's modification time, unix seconds.
    #[serde(default)]
    pub mtime: i64,
    /// The file's path on the node.
    #[serde(default)]
    pub file: String,
    /// Whether the file changed since the last publish.
    #[serde(default)]
    pub updated: bool,
    /// Always [`FILE_CONTENT`].
    pub protocol: String,
    /// base64 of the file.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub content: String,
    /// base64 of the gzipped file (the schema says zlib; it is gzip).
    #[serde(default, skip_serializing_if = "is_empty")]
    pub zcontent: String,
}

/// The node inventory, published by the `inventory_content` provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryContent {
    /// Always [`INVENTORY_CONTENT`].
    pub protocol: String,
    /// The inventory as an embedded JSON object (not base64), kept byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Box<RawValue>>,
    /// base64 of the gzipped inventory JSON.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub zcontent: String,
}

/// A registration payload of either kind.
#[derive(Debug, Clone)]
pub enum Registration {
    /// `choria:registration:filecontent:1`
    FileContent(FileContent),
    /// `choria:registration:inventorycontent:1`
    InventoryContent(InventoryContent),
}

impl Registration {
    /// True when `body` looks like a registration payload (its `protocol` is one of
    /// ours). Cheap: reads only the front of the body in the common case.
    pub fn is_registration(body: &[u8]) -> bool {
        matches!(
            super::protocol_of(Layer::Registration, body),
            Ok(Some(p)) if p == FILE_CONTENT || p == INVENTORY_CONTENT
        )
    }

    /// Parses a registration payload.
    pub fn decode(body: &[u8]) -> Result<Registration, DecodeError> {
        let layer = Layer::Registration;
        let protocol = super::protocol_of(layer, body)?
            .ok_or_else(|| DecodeError::new(layer, Reason::MissingField("protocol".into())))?;
        let registration = match &*protocol {
            FILE_CONTENT => Registration::FileContent(parse(layer, body)?),
            INVENTORY_CONTENT => Registration::InventoryContent(parse(layer, body)?),
            _ => {
                return Err(DecodeError::new(
                    layer,
                    Reason::UnknownProtocol(protocol.into_owned()),
                ))
            }
        };
        let has_content = match &registration {
            Registration::FileContent(f) => !f.content.is_empty() || !f.zcontent.is_empty(),
            Registration::InventoryContent(i) => i.content.is_some() || !i.zcontent.is_empty(),
        };
        if !has_content {
            return Err(DecodeError::new(
                layer,
                Reason::MissingField("content or zcontent".into()),
            ));
        }
        Ok(registration)
    }

    /// The registered data, decompressed when it came as `zcontent`: the file's bytes,
    /// or the inventory JSON.
    pub fn content(&self, limits: &Limits) -> Result<Vec<u8>, DecodeError> {
        let layer = Layer::Registration;
        match self {
            Registration::FileContent(f) if !f.zcontent.is_empty() => {
                gunzip(layer, &b64_decode(layer, "zcontent", &f.zcontent)?, limits)
            }
            Registration::FileContent(f) => b64_decode(layer, "content", &f.content),
            Registration::InventoryContent(i) => match &i.content {
                Some(raw) => Ok(raw.get().as_bytes().to_vec()),
                None => gunzip(layer, &b64_decode(layer, "zcontent", &i.zcontent)?, limits),
            },
        }
    }

    /// Whether the payload was compressed.
    pub fn is_compressed(&self) -> bool {
        match self {
            Registration::FileContent(f) => !f.zcontent.is_empty(),
            Registration::InventoryContent(i) => i.content.is_none(),
        }
    }
}
