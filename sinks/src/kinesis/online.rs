//! `coro validate --online` for a Kinesis sink: the stream exists, takes writes, and
//! the credentials may put records to it.

use super::config::KinesisConfig;
use super::service::{client, describe};
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

/// The checks, each `Ok(what held)` or `Err(what failed and what to do)`: the stream
/// exists and is ACTIVE or UPDATING (DescribeStreamSummary), and an empty `PutRecords`
/// is refused only for being empty, not for access (nothing is written).
pub async fn check_online(config: &KinesisConfig) -> Vec<Result<String, String>> {
    let client = match client(config).await {
        Ok(c) => c,
        Err(e) => return vec![Err(format!("kinesis: {e}"))],
    };
    let stream = &config.stream;
    let mut out = Vec::new();
    match client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
    {
        Ok(summary) => {
            let Some(d) = summary.stream_description_summary() else {
                return vec![Err(format!("stream {stream}: DescribeStreamSummary answered no summary"))];
            };
            let status = d.stream_status().as_str().to_string();
            let encryption = d
                .encryption_type()
                .map_or("NONE".to_string(), |e| e.as_str().to_string());
            let line = format!(
                "stream {stream} exists: {status}, {} open shard(s), encryption {encryption}",
                d.open_shard_count()
            );
            out.push(match status.as_str() {
                "ACTIVE" | "UPDATING" => Ok(line),
                _ => Err(format!("{line}: it takes writes only when ACTIVE or UPDATING")),
            });
        }
        Err(SdkError::ServiceError(e)) if e.err().code() == Some("ResourceNotFoundException") => {
            return vec![Err(format!(
                "stream {stream} does not exist (region {}): create it, or records are dead-lettered",
                config.region.as_deref().unwrap_or("from the AWS chain")
            ))]
        }
        Err(e) => {
            return vec![Err(format!(
                "kinesis: DescribeStreamSummary of {stream}: {}; check region, endpoint and credentials",
                describe(&e)
            ))]
        }
    }
    // An empty PutRecords: access is checked before the request's content, so a
    // refusal for the content means the credentials may write (and nothing is stored).
    out.push(
        match client
            .put_records()
            .stream_name(stream)
            .set_records(Some(Vec::new()))
            .send()
            .await
        {
            Ok(_) => Ok(format!("stream {stream} takes PutRecords")),
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err().code(),
                    Some("ValidationException" | "InvalidArgumentException" | "SerializationException")
                ) =>
            {
                Ok(format!("stream {stream} takes PutRecords (access allowed)"))
            }
            Err(e) => Err(format!(
                "stream {stream} does not take PutRecords: {}; the credentials need kinesis:PutRecords (and kms:GenerateDataKey for an encrypted stream)",
                describe(&e)
            )),
        },
    );
    out
}
