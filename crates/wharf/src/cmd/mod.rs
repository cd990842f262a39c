//! One module per subcommand.

pub(crate) mod gateway;
pub(crate) mod server;
mod signals;
