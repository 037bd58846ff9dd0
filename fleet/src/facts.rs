//! Deterministic facts and classes for simulated nodes.
//!
//! The same seed and node index always give the same facts, so a benchmark or demo can
//! be repeated and filters (`country=mt`, `fleet_index<10`) select the same nodes. The
//! set is deliberately small (about ten facts) to keep 10,000 nodes cheap.

use serde_json::{json, Value};

const COUNTRIES: [&str; 8] = ["mt", "de", "gb", "us", "za", "nl", "fr", "jp"];
const ROLES: [&str; 6] = ["web", "db", "cache", "queue", "app", "lb"];
const ENVIRONMENTS: [&str; 3] = ["production", "staging", "development"];
const OSES: [(&str, &str, &str); 4] = [
    ("RedHat", "AlmaLinux", "9"),
    ("RedHat", "RockyLinux", "8"),
    ("Debian", "Debian", "12"),
    ("Debian", "Ubuntu", "24"),
];

/// Facts and classes of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// A JSON object of facts.
    pub facts: Value,
    /// Configuration management classes, lowercase.
    pub classes: Vec<String>,
}

/// The facts and classes of node `index` (0-based) of a fleet with `seed`.
///
/// Facts: `country`, `datacenter` (`dc1`..`dc4`), `role`, `environment`,
/// `os.{family,name,release.major}`, `processors.count`, `memory_mb`, `fleet_index`
/// (the index, so `fleet_index<10` picks ten nodes) and `fleet_seed`. Classes:
/// `role::<role>`, `profile::base`, `profile::<environment>`, `dc::<datacenter>`.
pub fn generate(seed: u64, index: usize) -> Generated {
    let mut rng = fastrand::Rng::with_seed(
        seed ^ (index as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let country = COUNTRIES[rng.usize(..COUNTRIES.len())];
    let role = ROLES[rng.usize(..ROLES.len())];
    // Mostly production, like a real estate.
    let environment = ENVIRONMENTS[match rng.u8(..10) {
        0..=6 => 0,
        7..=8 => 1,
        _ => 2,
    }];
    let dc = format!("dc{}", rng.u8(1..=4));
    let (family, name, major) = OSES[rng.usize(..OSES.len())];
    let cpus = [2u32, 4, 8, 16, 32][rng.usize(..5)];
    let memory_mb = cpus * 4096;
    let facts = json!({
        "country": country,
        "datacenter": dc,
        "role": role,
        "environment": environment,
        "os": {"family": family, "name": name, "release": {"major": major}},
        "processors": {"count": cpus},
        "memory_mb": memory_mb,
        "fleet_index": index,
        "fleet_seed": seed,
    });
    let classes = vec![
        format!("role::{role}"),
        "profile::base".to_string(),
        format!("profile::{environment}"),
        format!("dc::{dc}"),
    ];
    Generated { facts, classes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        assert_eq!(generate(7, 3), generate(7, 3));
        let countries: std::collections::BTreeSet<_> = (0..100)
            .map(|i| {
                generate(7, i).facts["country"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert!(countries.len() > 4);
        assert_eq!(generate(7, 42).facts["fleet_index"], 42);
    }
}
