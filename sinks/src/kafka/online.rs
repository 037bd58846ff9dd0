//! `coro validate --online` for a Kafka sink: the brokers answer, and the topic exists
//! or will be created on first write (and which of the two).

use super::config::KafkaConfig;
use super::service::client_config;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use std::time::Duration;

/// How long each question to the brokers may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What the topic check found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Topic {
    Exists(usize),
    Missing,
}

/// The checks, each `Ok(what held)` or `Err(what failed and what to do)`: the brokers
/// answer (with the sink's TLS/SASL settings), and the topic (for a template, the one a
/// reply from `node1` of agent `rpcutil` would go to) exists, or the broker will
/// create it on first write. Nothing is created.
pub async fn check_online(config: &KafkaConfig) -> Vec<Result<String, String>> {
    let mut cc = client_config(config, "coro-validate");
    // Asking about a topic must not create it.
    cc.set("allow.auto.create.topics", "false");
    let admin: AdminClient<DefaultClientContext> = match cc.create() {
        Ok(a) => a,
        Err(e) => return vec![Err(format!("kafka client: {e}"))],
    };
    let admin = std::sync::Arc::new(admin);
    let brokers = config.brokers.clone();
    let sample = sample_topic(config);
    let topic = sample.clone();
    let probe = admin.clone();
    let metadata = tokio::task::spawn_blocking(move || {
        let all = probe.inner().fetch_metadata(None, TIMEOUT)?;
        let ids: Vec<i32> = all.brokers().iter().map(|b| b.id()).collect();
        let one = probe.inner().fetch_metadata(Some(&topic), TIMEOUT)?;
        let found = one
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(Topic::Missing, |t| match t.error() {
                Some(e)
                    if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition =>
                {
                    Topic::Missing
                }
                _ if t.partitions().is_empty() => Topic::Missing,
                _ => Topic::Exists(t.partitions().len()),
            });
        Ok::<_, rdkafka::error::KafkaError>((ids, found))
    })
    .await;
    let (ids, found) = match metadata {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            return vec![Err(format!(
                "brokers {brokers:?} did not answer: {e}; check brokers and, for TLS/SASL, [librdkafka]"
            ))]
        }
        Err(e) => return vec![Err(format!("kafka metadata: {e}"))],
    };
    let mut out = vec![Ok(format!(
        "connected to {brokers:?}: {} broker(s) in the cluster",
        ids.len()
    ))];
    let named = if config
        .topic_template()
        .ok()
        .and_then(|t| t.fixed().map(str::to_string))
        .is_some()
    {
        format!("topic {sample}")
    } else {
        format!("topic template {} (e.g. {sample})", config.topic)
    };
    out.push(match found {
        Topic::Exists(partitions) => Ok(format!("{named} exists ({partitions} partitions)")),
        Topic::Missing if !config.asks_to_create_topics() => Err(format!(
            "{named} does not exist, and the sink does not ask for topics to be created (allow.auto.create.topics = false): create it, or records are dead-lettered as unknown topic"
        )),
        Topic::Missing => match auto_create(&admin, &ids).await {
            Some(true) => Ok(format!(
                "{named} does not exist yet; the broker creates it on first write (auto.create.topics.enable = true)"
            )),
            Some(false) => Err(format!(
                "{named} does not exist, and the broker does not create topics (auto.create.topics.enable = false): create it, or records are dead-lettered as unknown topic"
            )),
            None => Ok(format!(
                "{named} does not exist yet; the broker did not say whether it creates topics (no auto.create.topics.enable in DescribeConfigs): it is created on first write if the broker allows it (tansu does), else records are dead-lettered as unknown topic"
            )),
        },
    });
    out
}

/// The broker's `auto.create.topics.enable`, if it tells.
async fn auto_create(admin: &AdminClient<DefaultClientContext>, ids: &[i32]) -> Option<bool> {
    let id = *ids.first()?;
    let specifier = ResourceSpecifier::Broker(id);
    let options = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let results = admin.describe_configs([&specifier], &options).await.ok()?;
    let resource = results.into_iter().next()?.ok()?;
    let value = resource.get("auto.create.topics.enable")?.value.clone()?;
    Some(value == "true")
}

/// The topic a reply from `node1` of `rpcutil` goes to.
fn sample_topic(config: &KafkaConfig) -> String {
    let record = coro_core::Record {
        subject: String::new(),
        version: coro_core::protocol::Version::V1,
        kind: coro_core::Kind::Reply,
        sender: "node1".into(),
        request_id: String::new(),
        agent: "rpcutil".into(),
        collective: Some("mcollective".into()),
        time_ns: 0,
        body: Default::default(),
        raw: Default::default(),
    };
    match config.topic_template() {
        Ok(t) => t.render_topic(&record),
        Err(_) => config.topic.clone(),
    }
}
