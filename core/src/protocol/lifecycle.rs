//! Lifecycle events (`choria.lifecycle.event.<type>.<component>`), in the legacy form
//! (`{"protocol":"io.choria.lifecycle.v1.startup",…}`) and the CloudEvents form that
//! wraps it (`{"specversion":"1.0",…,"data":{…}}`).

use super::codec::parse;
use super::error::{DecodeError, Layer, Reason};
use serde::{Deserialize, Serialize};

/// The kind of lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A component is running (periodic).
    Alive,
    /// A node finished provisioning.
    Provisioned,
    /// A component is stopping.
    Shutdown,
    /// A component started.
    Startup,
    /// A component upgraded itself.
    Upgraded,
    /// A type newer than this build knows; kept by name.
    Other(String),
}

impl EventType {
    /// Recognises `io.choria.lifecycle.v1.<type>` and the older `choria:lifecycle:<type>:1`.
    pub fn from_protocol(protocol: &str) -> Option<EventType> {
        let name = protocol
            .strip_prefix("io.choria.lifecycle.v1.")
            .or_else(|| {
                protocol
                    .strip_prefix("choria:lifecycle:")
                    .and_then(|rest| rest.strip_suffix(":1"))
            })?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        Some(match name {
            "alive" => EventType::Alive,
            "provisioned" => EventType::Provisioned,
            "shutdown" => EventType::Shutdown,
            "startup" => EventType::Startup,
            "upgraded" => EventType::Upgraded,
            other => EventType::Other(other.to_string()),
        })
    }

    /// The type's name, as in the subject `choria.lifecycle.event.<name>.<component>`.
    pub fn name(&self) -> &str {
        match self {
            EventType::Alive => "alive",
            EventType::Provisioned => "provisioned",
            EventType::Shutdown => "shutdown",
            EventType::Startup => "startup",
            EventType::Upgraded => "upgraded",
            EventType::Other(name) => name,
        }
    }
}

/// Which envelope the event came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The bare event object.
    Legacy,
    /// A CloudEvents 1.0 envelope around the bare event.
    CloudEvents,
}

/// A decoded lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// Envelope form.
    pub format: Format,
    /// What happened.
    pub event_type: EventType,
    /// The event's `protocol` string.
    pub protocol: String,
    /// Unique correlation id.
    pub id: String,
    /// Identity of the component's host.
    pub identity: String,
    /// The component, e.g. `server`.
    pub component: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// Component version (alive, startup, upgraded).
    pub version: Option<String>,
    /// Version upgraded to (upgraded).
    pub new_version: Option<String>,
    /// The bare event JSON, exactly as received.
    pub data: Vec<u8>,
}

#[derive(Deserialize)]
struct Legacy {
    protocol: String,
    id: String,
    identity: String,
    component: String,
    timestamp: i64,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    new_version: Option<String>,
}

#[derive(Deserialize)]
struct CloudEvent<'a> {
    specversion: Option<String>,
    #[serde(borrow, default)]
    data: Option<&'a serde_json::value::RawValue>,
}

/// Decodes a bare lifecycle event.
pub fn decode_legacy(bytes: &[u8]) -> Result<LifecycleEvent, DecodeError> {
    let layer = Layer::Lifecycle;
    let event: Legacy = parse(layer, bytes)?;
    let event_type = EventType::from_protocol(&event.protocol)
        .ok_or_else(|| DecodeError::new(layer, Reason::UnknownProtocol(event.protocol.clone())))?;
    let needs_version = matches!(
        event_type,
        EventType::Alive | EventType::Startup | EventType::Upgraded
    );
    if needs_version && event.version.is_none() {
        return Err(DecodeError::new(
            layer,
            Reason::MissingField("version".into()),
        ));
    }
    if event_type == EventType::Upgraded && event.new_version.is_none() {
        return Err(DecodeError::new(
            layer,
            Reason::MissingField("new_version".into()),
        ));
    }
    Ok(LifecycleEvent {
        format: Format::Legacy,
        event_type,
        protocol: event.protocol,
        id: event.id,
        identity: event.identity,
        component: event.component,
        timestamp: event.timestamp,
        version: event.version,
        new_version: event.new_version,
        data: bytes.to_vec(),
    })
}

/// Decodes a JSON object without a `protocol` key: only a CloudEvents lifecycle event
/// qualifies.
pub fn decode_cloudevent(bytes: &[u8]) -> Result<LifecycleEvent, DecodeError> {
    let envelope: CloudEvent<'_> = parse(Layer::Payload, bytes)?;
    if envelope.specversion.is_none() {
        return Err(DecodeError::new(
            Layer::Payload,
            Reason::MissingField("protocol".into()),
        ));
    }
    let data = envelope
        .data
        .ok_or_else(|| DecodeError::new(Layer::Lifecycle, Reason::MissingField("data".into())))?;
    let mut event = decode_legacy(data.get().as_bytes())?;
    event.format = Format::CloudEvents;
    Ok(event)
}
