//! NATS connection helpers shared by the sinks that speak NATS.

use async_nats::ServerAddr;

/// Parses `nats://host:port` (or bare `host:port`) server URLs.
pub fn servers(urls: &[String]) -> Result<Vec<ServerAddr>, String> {
    if urls.is_empty() {
        return Err("no NATS servers given".into());
    }
    urls.iter()
        .map(|u| {
            let url = if u.contains("://") {
                u.clone()
            } else {
                format!("nats://{u}")
            };
            url.parse::<ServerAddr>()
                .map_err(|e| format!("{u:?} is not a NATS server URL: {e}"))
        })
        .collect()
}
