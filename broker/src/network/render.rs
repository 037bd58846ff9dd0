//! The nats-server config file for a [`NetworkConfig`], in nats-server's own syntax,
//! with the options go-choria sets on its embedded server (`network.go::NewServer`,
//! PROTOCOL.md §4.2).
//!
//! Every string is double-quoted with nats-server's escapes, so a password or path
//! holding `"`, `\`, `$`, `#` or `}` reaches nats-server as written (an unquoted `$x`
//! would be a variable reference).
//!
//! What differs from Go, and why:
//! * Monitoring listens on an internal loopback port (`monitor`), never on the stats
//!   port: Coro's HTTP server owns that port and forwards the NATS paths to this one.
//! * No accounts: clients, and JetStream, are in nats-server's global account (Go puts
//!   them in `choria`), since Coro has no per-connection Choria authentication.
//! * With a CA, `tls.verify` requires client certificates (Go asks for one and leaves
//!   the decision to its auth layer, which admits verified mTLS unrestricted).

use super::config::NetworkConfig;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The nats-server config for `cfg`, with monitoring on `monitor`.
pub fn render(cfg: &NetworkConfig, monitor: SocketAddr) -> String {
    let mut out = String::new();
    let mut line = |indent: usize, key: &str, value: String| kv(&mut out, indent, key, value);
    line(0, "server_name", quote(&cfg.identity));
    line(0, "host", quote(&cfg.listen_address));
    line(0, "port", cfg.client_port.to_string());
    line(0, "client_advertise", quote(&cfg.client_advertise));
    line(0, "write_deadline", duration(cfg.write_deadline));
    line(0, "max_connections", cfg.max_connections.to_string());
    // tracing adds its own timestamps to the forwarded log lines.
    line(0, "logtime", "false".into());
    line(0, "debug", cfg.debug.to_string());
    line(0, "http", quote(&monitor.to_string()));
    if let Some(port) = cfg.pprof_port {
        line(0, "prof_port", port.to_string());
    }

    block(&mut out, 0, "authorization", |out| {
        kv(out, 1, "timeout", seconds(cfg.auth_timeout));
    });

    block(&mut out, 0, "cluster", |out| {
        kv(out, 1, "name", quote(&cfg.cluster_name));
        let Some(cluster) = &cfg.cluster else {
            return;
        };
        kv(out, 1, "host", quote(&cfg.listen_address));
        kv(out, 1, "port", cluster.port.to_string());
        // As Go: peers are not gossiped to clients, and one route per peer.
        kv(out, 1, "no_advertise", "true".into());
        kv(out, 1, "pool_size", "-1".into());
        if let Some((user, password)) = &cluster.credentials {
            block(out, 1, "authorization", |out| {
                kv(out, 2, "user", quote(user));
                kv(out, 2, "password", quote(password));
            });
        }
        // nats-server authenticates outgoing routes only with credentials in the URL.
        let routes: Vec<String> = cluster
            .routes
            .iter()
            .map(|r| quote(&route_url(r, cluster.credentials.as_ref())))
            .collect();
        kv(out, 1, "routes", format!("[{}]", routes.join(", ")));
    });

    if let Some(tls) = &cfg.tls {
        block(&mut out, 0, "tls", |out| {
            kv(out, 1, "cert_file", quote_path(&tls.certificate));
            kv(out, 1, "key_file", quote_path(&tls.key));
            if let Some(ca) = &tls.ca {
                kv(out, 1, "ca_file", quote_path(ca));
                kv(out, 1, "verify", "true".into());
            }
            kv(out, 1, "timeout", seconds(cfg.tls_timeout));
            if !tls.cipher_suites.is_empty() {
                kv(out, 1, "cipher_suites", list(&tls.cipher_suites));
            }
            if !tls.curve_preferences.is_empty() {
                kv(out, 1, "curve_preferences", list(&tls.curve_preferences));
            }
        });
    }

    if let Some(store) = &cfg.stream_store {
        block(&mut out, 0, "jetstream", |out| {
            kv(out, 1, "store_dir", quote_path(store));
        });
    }
    out
}

fn kv(out: &mut String, indent: usize, key: &str, value: String) {
    let _ = writeln!(out, "{:indent$}{key}: {value}", "", indent = indent * 2);
}

fn block(out: &mut String, indent: usize, name: &str, body: impl FnOnce(&mut String)) {
    let _ = writeln!(out, "{:indent$}{name} {{", "", indent = indent * 2);
    body(out);
    let _ = writeln!(out, "{:indent$}}}", "", indent = indent * 2);
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// `route` with `credentials` as its user info, percent-encoded.
fn route_url(route: &str, credentials: Option<&(String, String)>) -> String {
    match (credentials, route.split_once("://")) {
        (Some((user, password)), Some((scheme, host))) => format!(
            "{scheme}://{}:{}@{host}",
            percent_encode(user),
            percent_encode(password)
        ),
        _ => route.to_string(),
    }
}

/// Every byte but URL-unreserved ones as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `s` as a nats-server quoted string. Its escapes are `\t \n \r \" \\` and `\xHH`;
/// everything else, UTF-8 included, is written as is.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote_path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// A duration nats-server parses (Go's `time.ParseDuration`).
fn duration(d: Duration) -> String {
    quote(&format!("{}ms", d.as_millis()))
}

/// Seconds as a number, the unit of nats-server's `timeout` options.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::config::{ClusterConfig, TlsConfig};
    use coro_core::config::ChoriaConfig;
    use std::path::PathBuf;

    fn config(text: &str) -> NetworkConfig {
        NetworkConfig::from_choria(&ChoriaConfig::parse("broker.conf", text))
            .unwrap()
            .unwrap()
    }

    fn monitor() -> SocketAddr {
        "127.0.0.1:38222".parse().unwrap()
    }

    #[test]
    fn network_render_defaults() {
        let c = config("plugin.choria.broker_network = true\nidentity = node1.example.net\n");
        assert_eq!(
            render(&c, monitor()),
            r#"server_name: "node1.example.net"
host: "::"
port: 4222
client_advertise: "node1.example.net:4222"
write_deadline: "10000ms"
max_connections: 50000
logtime: false
debug: false
http: "127.0.0.1:38222"
authorization {
  timeout: 2
}
cluster {
  name: "CHORIA"
}
"#
        );
    }

    #[test]
    fn network_render_cluster_tls_and_jetstream() {
        let mut c = config(
            "plugin.choria.broker_network = true\nidentity = n1\n\
             plugin.choria.network.peers = nats://n1:5222, nats://n2:5222\n\
             plugin.choria.network.peer_user = choria_cluster\n\
             plugin.choria.network.peer_password = s£c\"r$et\\\n\
             plugin.choria.network.tls_timeout = 1500ms\n\
             plugin.choria.network.pprof_port = 6060\n\
             plugin.choria.network.stream.store = /var/lib/choria streams\n",
        );
        c.tls = Some(TlsConfig {
            certificate: PathBuf::from("/etc/choria/n1.pem"),
            key: PathBuf::from("/etc/choria/n1-key.pem"),
            ca: Some(PathBuf::from("/etc/choria/ca.pem")),
            cipher_suites: vec!["TLS_AES_128_GCM_SHA256".into()],
            curve_preferences: vec![],
        });
        let text = render(&c, monitor());
        assert!(text.contains("prof_port: 6060\n"), "{text}");
        assert!(
            text.contains(
                r#"cluster {
  name: "CHORIA"
  host: "::"
  port: 5222
  no_advertise: true
  pool_size: -1
  authorization {
    user: "choria_cluster"
    password: "s£c\"r$et\\"
  }
  routes: ["nats://choria_cluster:s%C2%A3c%22r%24et%5C@n1:5222", "nats://choria_cluster:s%C2%A3c%22r%24et%5C@n2:5222"]
}
tls {
  cert_file: "/etc/choria/n1.pem"
  key_file: "/etc/choria/n1-key.pem"
  ca_file: "/etc/choria/ca.pem"
  verify: true
  timeout: 1.5
  cipher_suites: ["TLS_AES_128_GCM_SHA256"]
}
jetstream {
  store_dir: "/var/lib/choria streams"
}
"#
            ),
            "{text}"
        );
    }

    #[test]
    fn network_render_tls_without_ca_does_not_verify() {
        let mut c = config("plugin.choria.broker_network = true\nidentity = n1\n");
        c.tls = Some(TlsConfig {
            certificate: PathBuf::from("c.pem"),
            key: PathBuf::from("k.pem"),
            ca: None,
            cipher_suites: vec![],
            curve_preferences: vec![],
        });
        c.cluster = Some(ClusterConfig {
            port: 6222,
            routes: vec!["nats://a:6222".into()],
            credentials: None,
        });
        let text = render(&c, monitor());
        assert!(!text.contains("verify"), "{text}");
        assert!(!text.contains("ca_file"), "{text}");
        assert!(!text.contains("authorization {\n    user"), "{text}");
        assert!(text.contains("  port: 6222\n"), "{text}");
        assert!(text.contains("  routes: [\"nats://a:6222\"]\n"), "{text}");
    }

    #[test]
    fn network_quotes_like_nats() {
        assert_eq!(quote("plain"), r#""plain""#);
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("tab\there\n"), r#""tab\there\n""#);
        assert_eq!(quote("bell\u{7}"), r#""bell\x07""#);
        assert_eq!(quote("$HOME # } é"), r#""$HOME # } é""#);
    }

    #[test]
    fn network_timeouts_in_seconds() {
        assert_eq!(seconds(Duration::from_secs(2)), "2");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5");
        assert_eq!(duration(Duration::from_secs(90)), r#""90000ms""#);
    }
}
