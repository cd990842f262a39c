//! Schedules: due runs (cron, by the backups' [`Clock`](super::Clock)), retention after each
//! run, freshness (sanoid's warn and crit ages by the template's shortest period) and the
//! alerts on changes of it.

use std::sync::Arc;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;
use wharf_backup::freshness::{self, Level};
use wharf_backup::retention::{self, Entry, Template};
use wharf_backup::schedule::Cron;
use wharf_notify::AlertKind;
use wharf_store::{Backup, BackupKind, BackupState, Schedule};

use super::Backups;

/// A schedule's freshness, as `wharf backups check` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Freshness {
    pub(crate) schedule: String,
    pub(crate) target: String,
    /// `ok`, `warn` or `crit`.
    pub(crate) level: &'static str,
    pub(crate) newest_verified: Option<i64>,
    pub(crate) age_seconds: Option<i64>,
    pub(crate) warn_seconds: i64,
    pub(crate) crit_seconds: i64,
    pub(crate) last_error: Option<String>,
    pub(crate) next_run: Option<i64>,
}

pub(crate) fn level_str(level: Level) -> &'static str {
    match level {
        Level::Ok => "ok",
        Level::Warn => "warn",
        Level::Crit => "crit",
    }
}

/// A schedule's labels: `schedule`, `target`.
type Labels = Vec<(String, String)>;

/// The gauges `/metrics` shows per schedule.
#[derive(Clone, Default)]
pub(crate) struct Metrics {
    /// 0 ok, 1 warn, 2 crit (Nagios's codes).
    pub(crate) level: Family<Labels, Gauge>,
    pub(crate) newest_verified: Family<Labels, Gauge>,
    /// The label sets in use, to remove a schedule's.
    labels: std::sync::Arc<std::sync::Mutex<Vec<Labels>>>,
}

impl Metrics {
    fn set(&self, labels: Labels, level: i64, newest: i64) {
        self.level.get_or_create(&labels).set(level);
        self.newest_verified.get_or_create(&labels).set(newest);
        let mut known = self.labels.lock().unwrap_or_else(|p| p.into_inner());
        if !known.contains(&labels) {
            known.push(labels);
        }
    }

    fn forget(&self, doomed: impl Fn(&Labels) -> bool) {
        let mut known = self.labels.lock().unwrap_or_else(|p| p.into_inner());
        known.retain(|labels| {
            if doomed(labels) {
                self.level.remove(labels);
                self.newest_verified.remove(labels);
                false
            } else {
                true
            }
        });
    }
}

/// Runs due schedules and watches freshness until `stop`.
pub(crate) fn spawn_scheduler(backups: Arc<Backups>, stop: CancellationToken) {
    let _ = std::fs::remove_dir_all(backups.spool());
    tokio::spawn(async move {
        // A backup a killed server left running never finishes: it failed, and is alerted
        // about as any failure is (freshness stays quiet about a schedule whose last run
        // failed: that was told).
        let now = backups.clock.now();
        const WHY: &str = "the server stopped during this backup";
        if let Ok(failed) = backups.store.fail_running_backups(WHY, now)
            && !failed.is_empty()
        {
            tracing::warn!(
                count = failed.len(),
                "backups a stopped server left running are failed"
            );
            for (id, target, kind) in failed {
                backups
                    .alert(
                        AlertKind::Failure,
                        &target,
                        format!("backup of {target} failed"),
                        format!("The {kind} backup of {target} (#{id}) failed: {WHY}"),
                    )
                    .await;
            }
        }
        // Freshness is watched on its own: a backup that hangs (a dump waiting on a lock the
        // app holds) keeps the schedules from running, and is exactly what must still turn
        // stale and be alerted about.
        let (watcher, watch_stop) = (backups.clone(), stop.clone());
        tokio::spawn(async move {
            // Every schedule counts as ok at start: one that went stale while the server was
            // down is alerted about now.
            loop {
                watcher.watch().await;
                tokio::select! {
                    _ = watch_stop.cancelled() => return,
                    _ = tokio::time::sleep(watcher.clock.tick()) => {}
                }
            }
        });
        loop {
            backups.run_due().await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backups.clock.tick()) => {}
            }
        }
    });
}

fn parse_level(s: &str) -> Level {
    match s {
        "ok" => Level::Ok,
        "warn" => Level::Warn,
        _ => Level::Crit,
    }
}

impl Backups {
    /// The schedule's last scheduled run (any outcome), or its creation. Runs stamped after
    /// `now` (the clock was set back since) do not count: the schedule goes on by the clock.
    fn last_run(&self, s: &Schedule, backups: &[Backup], now: i64) -> i64 {
        backups
            .iter()
            .filter(|b| b.kind == BackupKind::Scheduled && b.schedule.as_deref() == Some(&s.name))
            .map(|b| b.started_at)
            .filter(|t| *t <= now)
            .max()
            .unwrap_or(s.created_at)
    }

    /// Takes the backups that are due, one after another. A server that was down runs a missed
    /// schedule once, not once per missed time.
    async fn run_due(self: &Arc<Self>) {
        let Ok(schedules) = self.store.schedules() else {
            return;
        };
        for s in schedules {
            let Ok(all) = self.store.backups(Some(&s.target)) else {
                continue;
            };
            let Ok(cron) = Cron::parse(&s.cron) else {
                continue;
            };
            // A schedule made "in the future" (the clock was set back since) runs now rather
            // than wait for the clock to catch up.
            let now = self.clock.now();
            let last = self.last_run(&s, &all, now);
            let due = last > now || cron.next_after(last).is_some_and(|t| t <= now);
            if !due {
                continue;
            }
            let target = match self.target(&s.target) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(schedule = %s.name, error = %e, "schedule skipped");
                    continue;
                }
            };
            match self
                .take(&target, BackupKind::Scheduled, Some(&s.name))
                .await
            {
                Ok(b) if b.state == BackupState::Verified => self.prune(&s).await,
                Ok(_) => {}
                Err(e) => tracing::error!(schedule = %s.name, error = %e, "backup not recorded"),
            }
        }
    }

    /// Removes what the schedule's template no longer keeps, from the repository first.
    async fn prune(self: &Arc<Self>, s: &Schedule) {
        let Ok(template) = Template::parse(&s.template) else {
            return;
        };
        let Ok(all) = self.store.backups(Some(&s.target)) else {
            return;
        };
        let mine: Vec<&Backup> = all
            .iter()
            .filter(|b| b.kind == BackupKind::Scheduled && b.state != BackupState::Removed)
            .collect();
        let entries: Vec<Entry> = mine
            .iter()
            .map(|b| Entry {
                // Zero-padded: retention may order ids as text.
                id: format!("{:012}", b.id),
                schedule: b.schedule.clone().unwrap_or_default(),
                time: b.started_at,
                verified: b.state == BackupState::Verified,
            })
            .collect();
        let expired = retention::expired(&entries, &s.name, &template, self.clock.now());
        if expired.is_empty() {
            return;
        }
        let doomed: Vec<&Backup> = mine
            .into_iter()
            .filter(|b| expired.contains(&format!("{:012}", b.id)))
            .collect();
        let snapshots: Vec<String> = doomed.iter().filter_map(|b| b.snapshot.clone()).collect();
        // Copies are left to the second repository's own retention: this server may hold no
        // right to delete there (a copy it could delete is no protection against it).
        let _work = self.work.lock().await;
        let me = self.clone();
        let forgotten = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let repo = me.repo()?;
            // Only what the repository still has: one gone already must not block the rest.
            let present: Vec<String> = repo
                .snapshots()
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|s| s.id)
                .collect();
            let snapshots: Vec<String> = snapshots
                .into_iter()
                .filter(|id| present.contains(id))
                .collect();
            if !snapshots.is_empty() {
                repo.forget(&snapshots).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match forgotten {
            Ok(()) => {
                let ids: Vec<i64> = doomed.iter().map(|b| b.id).collect();
                if let Err(e) = self.store.mark_backups_removed(&ids) {
                    tracing::warn!(error = %e, "could not record removed backups");
                }
                tracing::info!(schedule = %s.name, removed = ids.len(), "retention applied");
            }
            Err(e) => {
                self.reset();
                tracing::warn!(schedule = %s.name, error = %e, "retention failed; kept everything");
            }
        }
    }

    /// Every schedule's freshness now.
    pub(crate) fn freshness(&self) -> Vec<Freshness> {
        let now = self.clock.now();
        let Ok(schedules) = self.store.schedules() else {
            return Vec::new();
        };
        schedules
            .into_iter()
            .map(|s| {
                let all = self.store.backups(Some(&s.target)).unwrap_or_default();
                let runs: Vec<&Backup> = all
                    .iter()
                    .filter(|b| b.schedule.as_deref() == Some(&s.name))
                    .collect();
                // One stamped after now (the clock was set back) says nothing of today's age.
                let newest_verified = runs
                    .iter()
                    .filter(|b| matches!(b.state, BackupState::Verified))
                    .map(|b| b.started_at)
                    .filter(|t| *t <= now)
                    .max();
                let last = runs.iter().find(|b| b.state != BackupState::Running);
                let last_error = last.and_then(|b| b.error.clone());
                let thresholds = Template::parse(&s.template)
                    .map(|t| freshness::thresholds(&t))
                    .unwrap_or(freshness::Thresholds { warn: 0, crit: 0 });
                // Never verified yet: as old as the schedule, so one that never manages a
                // backup turns crit (and alerts) instead of waiting at warn for ever.
                let level = freshness::level(
                    newest_verified.or(Some(s.created_at)),
                    last_error.is_some(),
                    now,
                    &thresholds,
                );
                let next_run = Cron::parse(&s.cron)
                    .ok()
                    .and_then(|c| c.next_after(self.last_run(&s, &all, now).min(now)));
                Freshness {
                    schedule: s.name.clone(),
                    target: s.target.clone(),
                    level: level_str(level),
                    newest_verified,
                    age_seconds: newest_verified.map(|t| now - t),
                    warn_seconds: thresholds.warn,
                    crit_seconds: thresholds.crit,
                    last_error,
                    next_run,
                }
            })
            .collect()
    }

    /// Updates the gauges and alerts on every change into or out of `crit`: stale (or
    /// failed, already told at the failure) and recovered.
    async fn watch(&self) {
        let now = self.freshness();
        let mut changes = Vec::new();
        {
            let mut levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
            // Schedules removed: their alert state and gauges go with them.
            let gone: Vec<String> = levels
                .keys()
                .filter(|name| !now.iter().any(|f| &f.schedule == *name))
                .cloned()
                .collect();
            for name in gone {
                levels.remove(&name);
                self.metrics.forget(|labels| labels[0].1 == name);
            }
            for f in &now {
                let labels = vec![
                    ("schedule".to_string(), f.schedule.clone()),
                    ("target".to_string(), f.target.clone()),
                ];
                let level = parse_level(f.level);
                self.metrics
                    .set(labels, level as i64, f.newest_verified.unwrap_or(0));
                let before = levels
                    .insert(f.schedule.clone(), level)
                    .unwrap_or(Level::Ok);
                if before != level {
                    changes.push((f.clone(), before, level));
                }
            }
        }
        for (f, before, level) in changes {
            match (before, level) {
                (_, Level::Crit) if f.last_error.is_none() => {
                    let age = f.age_seconds.map_or("never verified".to_string(), |a| {
                        format!("{} h old", a / 3600)
                    });
                    self.alert(
                        AlertKind::Stale,
                        &f.target,
                        format!("backups of {} are stale", f.target),
                        format!(
                            "Schedule {}: the newest verified backup is {age} (critical after {} h).",
                            f.schedule,
                            f.crit_seconds / 3600
                        ),
                    )
                    .await
                }
                (Level::Crit, Level::Ok) => {
                    self.alert(
                        AlertKind::Recovery,
                        &f.target,
                        format!("backups of {} recovered", f.target),
                        format!("Schedule {}: a verified backup is fresh again.", f.schedule),
                    )
                    .await
                }
                _ => {}
            }
        }
    }
}
