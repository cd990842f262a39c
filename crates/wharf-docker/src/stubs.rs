//! Placeholder impls until the runtimes land (removed at merge).
use std::net::SocketAddr;

use wharf_runtime::{BoxFuture, InstanceSpec, InstanceStatus, Result, Runtime};

use crate::SwarmRuntime;

macro_rules! stub {
    ($t:ty, $name:literal) => {
        impl Runtime for $t {
            fn name(&self) -> &'static str {
                $name
            }
            fn start(&self, _: InstanceSpec) -> BoxFuture<'_, Result<Vec<SocketAddr>>> {
                todo!()
            }
            fn stop<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<()>> {
                todo!()
            }
            fn list(&self) -> BoxFuture<'_, Result<Vec<InstanceStatus>>> {
                todo!()
            }
            fn logs<'a>(&'a self, _: &'a str, _: usize) -> BoxFuture<'a, Result<Vec<String>>> {
                todo!()
            }
            fn subscribe_logs(&self, _: &str) -> tokio::sync::broadcast::Receiver<String> {
                todo!()
            }
            fn exited<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Option<String>> {
                todo!()
            }
            fn recent_output<'a>(&'a self, _: &'a str, _: usize) -> BoxFuture<'a, Vec<String>> {
                todo!()
            }
        }
    };
}
stub!(SwarmRuntime, "swarm");
