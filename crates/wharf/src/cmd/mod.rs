//! One module per subcommand.

pub(crate) mod agent;
pub(crate) mod gateway;
pub(crate) mod sandbox_exec;
pub(crate) mod server;
mod signals;

/// Raises the open-file limit for a serving process and says once what it did; a failure is
/// logged and serving goes on at the old limit.
fn raise_open_file_limit() {
    let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |n| n.to_string());
    match wharf_gateway::raise_open_file_limit() {
        Ok(l) if l.before != l.now => tracing::info!(
            "open-file limit raised from {} to {} (the hard limit)",
            show(l.before),
            show(l.now)
        ),
        Ok(l) => tracing::info!("open-file limit {} (the hard limit)", show(l.now)),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}
