//! Gateway configuration: the validated model and the TOML file format that produces it.

mod file;
mod model;
mod units;

pub use model::*;
pub use units::{parse_duration, parse_size};
