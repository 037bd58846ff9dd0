//! Blackhole sink settings: there are none.

use serde::Deserialize;

/// `type = "blackhole"`: takes no options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}
