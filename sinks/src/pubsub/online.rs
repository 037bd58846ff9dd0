//! `coro validate --online` for a Pub/Sub sink: the topic exists and the credentials
//! may publish to it.

use super::config::PubSubConfig;
use super::service::{endpoint, publisher};
use google_cloud_pubsub::client::TopicAdmin;
use google_cloud_pubsub::error::PublishError;
use google_cloud_pubsub::model::Message;
use std::time::Duration;

/// The checks, each `Ok(what held)` or `Err(what failed and what to do)`: the topic
/// exists (GetTopic), and a message with neither data nor attributes is refused only
/// for being empty, not for access (nothing is published).
pub async fn check_online(config: &PubSubConfig) -> Vec<Result<String, String>> {
    let topic = config.topic_name();
    let (endpoint, anonymous) = endpoint(config);
    let mut builder = TopicAdmin::builder();
    if let Some(e) = &endpoint {
        builder = builder.with_endpoint(e.clone());
    }
    if anonymous {
        builder = builder
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build());
    }
    let admin = match builder.build().await {
        Ok(a) => a,
        Err(e) => {
            return vec![Err(format!(
                "pubsub client: {e}; check the Google credentials"
            ))]
        }
    };
    let at = endpoint.as_deref().unwrap_or("pubsub.googleapis.com");
    let mut out = Vec::new();
    match tokio::time::timeout(
        Duration::from_secs(10),
        admin.get_topic().set_topic(&topic).send(),
    )
    .await
    {
        Ok(Ok(t)) => out.push(Ok(format!(
            "topic {} exists at {at}{}",
            t.name,
            if t.kms_key_name.is_empty() {
                String::new()
            } else {
                format!(" (CMEK {})", t.kms_key_name)
            }
        ))),
        Ok(Err(e)) if e.status().is_some_and(|s| s.code.name() == "NOT_FOUND") => {
            return vec![Err(format!(
                "topic {topic} does not exist at {at}: create it, or records are dead-lettered"
            ))]
        }
        Ok(Err(e)) => {
            return vec![Err(format!(
                "pubsub: GetTopic {topic} at {at}: {e}; check endpoint and credentials"
            ))]
        }
        Err(_) => {
            return vec![Err(format!(
                "pubsub: GetTopic {topic} at {at}: no answer in 10s"
            ))]
        }
    }
    let publisher = match publisher(config).await {
        Ok(p) => p,
        Err(e) => {
            return {
                out.push(Err(e.to_string()));
                out
            }
        }
    };
    let probe =
        tokio::time::timeout(Duration::from_secs(10), publisher.publish(Message::new())).await;
    out.push(match probe {
        Err(_) => Err(format!("pubsub: Publish to {topic}: no answer in 10s")),
        Ok(Ok(_)) => Ok(format!("topic {topic} takes Publish")),
        Ok(Err(PublishError::Rpc(e)))
            if e.status()
                .is_some_and(|s| s.code.name() == "INVALID_ARGUMENT") =>
        {
            Ok(format!("topic {topic} takes Publish (access allowed)"))
        }
        Ok(Err(e)) => Err(format!(
            "topic {topic} does not take Publish: {e}; the credentials need pubsub.topics.publish"
        )),
    });
    out
}
