//! The client side of federation (PROTOCOL.md §3.1, go-choria
//! `choria/connection.go::publishFederated*`): how a federated client publishes a
//! request.
//!
//! The client records its own hop, puts a `federation` header with the request id and
//! the target subjects into the transport, and publishes it once to
//! `choria.federation.<cluster>.federation` for every cluster it federates with. A
//! broadcast carries its one broadcast subject; a directed request is split into
//! messages of at most [`TARGETS_PER_MESSAGE`] node subjects each, in order, every one
//! sent to every cluster. Replies come back on the request's own reply subject.

use coro_core::protocol::transport::FederationHeader;
use coro_core::protocol::{DecodeError, Transport};

/// Node subjects one federated message carries at most, as Go (`util.SliceGroups(...,
/// 200, ...)`) and Ruby (`in_groups_of(200)`) clients split directed requests.
pub const TARGETS_PER_MESSAGE: usize = 200;

/// `choria.federation.<cluster>.federation`: where federated clients publish.
pub fn federation_subject(cluster: &str) -> String {
    format!("choria.federation.{cluster}.federation")
}

/// The client's own hop, which Go records on every publish:
/// `[server URL, client identity, server URL]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHop {
    /// The URL of the federation server the client is connected to.
    pub server: String,
    /// The client's identity.
    pub identity: String,
}

/// The messages a federated client publishes for one request: `payload` is the
/// transport the client would publish unfederated, `subjects` where it would publish
/// it (one broadcast or service subject, or one `<collective>.node.<id>` per node),
/// `request_id` its id. Returns `(subject, payload)` pairs: every chunk of targets to
/// every cluster, chunk by chunk.
pub fn federate(
    payload: &[u8],
    subjects: &[String],
    request_id: &str,
    clusters: &[String],
    hop: Option<&ClientHop>,
) -> Result<Vec<(String, Vec<u8>)>, DecodeError> {
    let version =
        super::pipeline::transport_version(payload).ok_or_else(super::wire::not_a_transport)?;
    let mut transport = Transport::decode(version, payload)?;
    if let Some(hop) = hop {
        transport.record_hop(&hop.server, &hop.identity, &hop.server);
    }
    let mut out = Vec::with_capacity(subjects.len().div_ceil(TARGETS_PER_MESSAGE) * clusters.len());
    for chunk in subjects.chunks(TARGETS_PER_MESSAGE) {
        transport.set_federation(Some(FederationHeader {
            request_id: request_id.to_string(),
            reply_to: String::new(),
            targets: chunk.to_vec(),
        }));
        let bytes = transport.encode();
        for cluster in clusters {
            out.push((federation_subject(cluster), bytes.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coro_core::protocol::v1;

    fn transport() -> Vec<u8> {
        let headers = v1::Headers {
            reply_to: "mcollective.reply.abc.1".into(),
            sender: "client".into(),
            ..Default::default()
        };
        Transport::V1(v1::Transport::new(b"{}", headers)).encode()
    }

    #[test]
    fn directed_requests_split_at_200_targets() {
        let subjects: Vec<String> = (0..450).map(|i| format!("mcollective.node.n{i}")).collect();
        let clusters = vec!["london".to_string(), "tokyo".to_string()];
        let hop = ClientHop {
            server: "nats://fed:4222".into(),
            identity: "client".into(),
        };
        let out = federate(&transport(), &subjects, "req1", &clusters, Some(&hop)).unwrap();
        assert_eq!(out.len(), 6);
        let subjects_of = |i: usize| {
            let t = Transport::decode(coro_core::protocol::Version::V1, &out[i].1).unwrap();
            assert_eq!(
                t.hops(),
                [vec!["nats://fed:4222", "client", "nats://fed:4222"]]
            );
            assert_eq!(t.reply_to(), "mcollective.reply.abc.1");
            let fed = t.federation().unwrap();
            assert_eq!(fed.request_id, "req1");
            assert_eq!(fed.reply_to, "");
            fed.targets
        };
        assert_eq!(out[0].0, "choria.federation.london.federation");
        assert_eq!(out[1].0, "choria.federation.tokyo.federation");
        assert_eq!(out[0].1, out[1].1);
        assert_eq!(subjects_of(0), subjects[..200]);
        assert_eq!(subjects_of(2), subjects[200..400]);
        assert_eq!(subjects_of(4), subjects[400..]);
        // Go writes the header in its own key order, empty reply-to left out.
        let text = String::from_utf8(out[0].1.clone()).unwrap();
        assert!(text.contains(r#""federation":{"req":"req1","target":["mcollective.node.n0","#));
    }

    #[test]
    fn not_a_transport_is_an_error() {
        assert!(federate(b"{}", &[], "r", &[], None).is_err());
    }
}
