//! Configuration helpers shared by the config models.

pub mod duration;
