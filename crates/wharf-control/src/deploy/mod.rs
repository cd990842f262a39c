//! Deploys: get the code, build it, back up what runs, make the new release live through the
//! reconciler's zero-downtime switch, keep the last releases; and rollback.

mod backup;
pub(crate) mod leftovers;
pub(crate) mod manifest;
mod pipeline;
pub(crate) mod source;
mod tools;

pub(crate) use pipeline::{Deploys, Source, deploy, restore_config, rollback};
pub(crate) use source::{check_git, check_image};
pub(crate) use tools::add_tool_paths;

/// Build and deploy output for the user, with env values masked.
#[derive(Clone)]
pub(crate) struct Output {
    tx: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    secrets: Vec<String>,
}

impl Output {
    pub(crate) fn new(tx: Option<tokio::sync::mpsc::UnboundedSender<String>>) -> Output {
        Output {
            tx,
            secrets: Vec::new(),
        }
    }

    /// Values that must never appear in output (short ones would mask too much by accident).
    pub(crate) fn mask(&mut self, values: impl IntoIterator<Item = String>) {
        self.secrets
            .extend(values.into_iter().filter(|v| v.len() >= 4));
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    pub(crate) fn line(&self, line: &str) {
        let mut line = line.to_string();
        for s in &self.secrets {
            if line.contains(s.as_str()) {
                line = line.replace(s.as_str(), "****");
            }
        }
        tracing::debug!(%line, "deploy output");
        if let Some(tx) = &self.tx {
            let _ = tx.send(line);
        }
    }
}
