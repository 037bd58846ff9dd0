//! Decode: payload bytes in, [`Record`] out. Undecodable payloads are answered with
//! [`Outcome::Reject`] carrying the decode error, so they reach the dead letter.

use super::Incoming;
use crate::protocol::{self, Limits};
use crate::sink::Outcome;
use crate::Record;
use futures::future::{self, Either, Ready};
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Decodes with the given limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeLayer {
    limits: Limits,
}

impl DecodeLayer {
    /// A decode layer with `limits`.
    pub fn new(limits: Limits) -> Self {
        DecodeLayer { limits }
    }
}

impl<S> Layer<S> for DecodeLayer {
    type Service = Decode<S>;

    fn layer(&self, inner: S) -> Decode<S> {
        Decode {
            inner,
            limits: self.limits,
        }
    }
}

/// The decode service; see [`DecodeLayer`].
#[derive(Debug, Clone)]
pub struct Decode<S> {
    inner: S,
    limits: Limits,
}

impl<S> Service<Incoming> for Decode<S>
where
    S: Service<Record, Response = Outcome>,
{
    type Response = Outcome;
    type Error = S::Error;
    type Future = Either<Ready<Result<Outcome, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, msg: Incoming) -> Self::Future {
        match protocol::decode_with(&msg.payload, &self.limits) {
            Ok(message) => Either::Right(self.inner.call(Record::from_message(
                &msg.subject,
                message,
                msg.payload,
            ))),
            Err(e) => Either::Left(future::ready(Ok(Outcome::reject(format!("decode: {e}"))))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tower::{service_fn, ServiceExt};

    #[tokio::test]
    async fn decodes_or_rejects() {
        let inner = service_fn(|r: Record| async move {
            assert_eq!(r.sender, "node1.example.net");
            Ok::<_, std::convert::Infallible>(Outcome::Delivered)
        });
        let mut svc = DecodeLayer::default().layer(inner);
        let reply = br#"{"protocol":"choria:reply:1","message":"x","envelope":{"requestid":"r","senderid":"node1.example.net","agent":"a","time":1}}"#;
        let ok = svc
            .ready()
            .await
            .unwrap()
            .call(Incoming {
                subject: "s".into(),
                payload: Bytes::from_static(reply),
            })
            .await
            .unwrap();
        assert_eq!(ok, Outcome::Delivered);
        let bad = svc
            .ready()
            .await
            .unwrap()
            .call(Incoming {
                subject: "s".into(),
                payload: Bytes::from_static(b"{oops"),
            })
            .await
            .unwrap();
        assert!(
            matches!(bad, Outcome::Reject { ref reason } if reason.starts_with("decode: payload: invalid JSON")),
            "{bad:?}"
        );
    }
}
