//! Federation edits as pure functions (PROTOCOL.md §3.3 and §3.5).
//!
//! The federation broker touches only the transport headers; `data` passes through
//! untouched, so end-to-end signatures hold. Each function takes a transport and returns
//! the edited copy and the subjects to publish it to.

use super::transport::{FederationHeader, Transport};

/// Why a message cannot cross the federation broker. The texts follow Go's log lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FederationError {
    /// No `headers.federation` object.
    #[error("received a message that was not federated")]
    NotFederated,
    /// A request with an empty `federation.target` list.
    #[error("received a federated request that does not have any targets")]
    NoTargets,
    /// A request without `headers.reply-to`, or a reply without `federation.reply-to`.
    #[error("received a federated message with no reply-to set")]
    NoReplyTo,
}

/// The subject servers reply to inside a member collective:
/// `choria.federation.<cluster>.collective` (queue group `<cluster>_collective`).
pub fn collective_subject(cluster: &str) -> String {
    format!("choria.federation.{cluster}.collective")
}

/// Request side (federation → collective), Go's `request_transformer`:
/// the client's reply subject moves into `federation.reply-to`, `reply-to` becomes
/// `choria.federation.<cluster>.collective`, and the targets are taken out of the
/// header and returned as the subjects to publish to.
pub fn transform_request(
    transport: &Transport,
    cluster: &str,
) -> Result<(Transport, Vec<String>), FederationError> {
    let mut fed = transport
        .federation()
        .ok_or(FederationError::NotFederated)?;
    if fed.targets.is_empty() {
        return Err(FederationError::NoTargets);
    }
    if transport.reply_to().is_empty() {
        return Err(FederationError::NoReplyTo);
    }
    let targets = std::mem::take(&mut fed.targets);
    fed.reply_to = transport.reply_to().to_string();
    let mut out = transport.clone();
    out.set_federation(Some(fed));
    out.set_reply_to(&collective_subject(cluster));
    Ok((out, targets))
}

/// Reply side (collective → federation), Go's `reply_transformer`: the one target is the
/// client's original reply subject, and the federation header is removed.
pub fn transform_reply(transport: &Transport) -> Result<(Transport, Vec<String>), FederationError> {
    let fed: FederationHeader = transport
        .federation()
        .ok_or(FederationError::NotFederated)?;
    if fed.reply_to.is_empty() {
        return Err(FederationError::NoReplyTo);
    }
    let mut out = transport.clone();
    out.set_federation(None);
    Ok((out, vec![fed.reply_to]))
}

/// Which transformer a hop names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `choria_request_transformer`
    Request,
    /// `choria_reply_transformer`
    Reply,
}

/// The processor text of the one hop the broker's egest records:
/// `<identity> (choria_nats_ingest:i, choria_<side>_transformer:j, choria_nats_egest:k)`.
pub fn hop_processor(
    identity: &str,
    side: Side,
    ingest: usize,
    transformer: usize,
    egest: usize,
) -> String {
    let name = match side {
        Side::Request => "choria_request_transformer",
        Side::Reply => "choria_reply_transformer",
    };
    format!(
        "{identity} (choria_nats_ingest:{ingest}, {name}:{transformer}, choria_nats_egest:{egest})"
    )
}
