//! `/backups`: the backups taken (list, one now), their freshness (`check`), the repository
//! and how to open it with restic, restores, schedules and the alerts sent.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use wharf_client::dto::{
    AlertView, BackupView, CheckView, FreshnessView, RepositoryView, RestoreRequest, RestoreView,
    RunBackup, ScheduleSpec,
};
use wharf_store::{Backup, BackupKind, BackupState, Schedule};

use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use crate::Control;
use wharf_store::Caller;

pub(crate) fn view(b: Backup) -> BackupView {
    BackupView {
        id: b.id,
        target: b.target,
        schedule: b.schedule,
        kind: b.kind.as_str().to_string(),
        state: b.state.as_str().to_string(),
        snapshot: b.snapshot,
        started_at: b.started_at,
        finished_at: b.finished_at,
        total_bytes: b.total_bytes,
        added_bytes: b.added_bytes,
        error: b.error,
        copies: b.copies,
        note: b.note,
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct ListQuery {
    target: Option<String>,
    /// Also those retention removed.
    #[serde(default)]
    all: bool,
}

pub(crate) async fn list(
    State(c): State<Arc<Control>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<BackupView>>> {
    Ok(Json(
        c.store
            .backups(q.target.as_deref())?
            .into_iter()
            .filter(|b| q.all || b.state != BackupState::Removed)
            .map(view)
            .collect(),
    ))
}

pub(crate) async fn run(
    State(c): State<Arc<Control>>,
    ApiJson(req): ApiJson<RunBackup>,
) -> ApiResult<Json<BackupView>> {
    let target = c.backups.target(&req.target).map_err(ApiError::not_found)?;
    // In a task of its own: a client that goes away does not cut a backup short.
    let backups = c.backups.clone();
    let done = tokio::spawn(async move { backups.take(&target, BackupKind::Manual, None).await })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(view(done)))
}

fn alert_view(a: wharf_store::AlertRecord) -> AlertView {
    AlertView {
        at: a.at,
        kind: a.kind,
        target: a.target,
        subject: a.subject,
        deliveries: serde_json::from_str(&a.deliveries).unwrap_or_default(),
    }
}

fn unsent(a: &AlertView) -> bool {
    a.deliveries
        .as_array()
        .is_some_and(|d| d.iter().any(|d| d["ok"] == false))
}

pub(crate) async fn check(State(c): State<Arc<Control>>) -> ApiResult<Json<CheckView>> {
    let schedules: Vec<FreshnessView> = c
        .backups
        .freshness()
        .into_iter()
        .map(|f| FreshnessView {
            schedule: f.schedule,
            target: f.target,
            level: f.level.to_string(),
            newest_verified: f.newest_verified,
            age_seconds: f.age_seconds,
            warn_seconds: f.warn_seconds,
            crit_seconds: f.crit_seconds,
            last_error: f.last_error,
            next_run: f.next_run,
        })
        .collect();
    let level = ["crit", "warn"]
        .into_iter()
        .find(|l| schedules.iter().any(|s| s.level == *l))
        .unwrap_or("ok")
        .to_string();
    let unsent_alerts = c
        .store
        .alerts(50)?
        .into_iter()
        .map(alert_view)
        .filter(unsent)
        .collect();
    Ok(Json(CheckView {
        level,
        schedules,
        unsent_alerts,
    }))
}

pub(crate) async fn repository(State(c): State<Arc<Control>>) -> ApiResult<Json<RepositoryView>> {
    let location = c.backups.location().to_string();
    let password_file = c.backups.password_file().display().to_string();
    Ok(Json(RepositoryView {
        restic: format!("restic -r {location} --password-file {password_file} snapshots"),
        location,
        password_file,
        copy: c.backups.copy_location().map(ToString::to_string),
    }))
}

pub(crate) async fn restore(
    State(c): State<Arc<Control>>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<RestoreRequest>,
) -> ApiResult<Json<RestoreView>> {
    let backups = c.backups.clone();
    let done = tokio::spawn(async move {
        backups
            .restore(&req.target, &req.snapshot, req.to.as_deref(), &caller.user)
            .await
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::invalid)?;
    Ok(Json(RestoreView {
        target: done.target,
        snapshot: done.snapshot,
        pre_restore: done.pre_restore,
        pre_restore_snapshot: done.pre_restore_snapshot,
        summary: done.summary,
    }))
}

fn schedule_view(s: Schedule) -> ScheduleSpec {
    ScheduleSpec {
        name: Some(s.name),
        target: s.target,
        template: Some(s.template),
        cron: Some(s.cron),
    }
}

pub(crate) async fn schedules(State(c): State<Arc<Control>>) -> ApiResult<Json<Vec<ScheduleSpec>>> {
    Ok(Json(
        c.store
            .schedules()?
            .into_iter()
            .map(schedule_view)
            .collect(),
    ))
}

pub(crate) async fn add_schedule(
    State(c): State<Arc<Control>>,
    ApiJson(req): ApiJson<ScheduleSpec>,
) -> ApiResult<(StatusCode, Json<ScheduleSpec>)> {
    c.backups.target(&req.target).map_err(ApiError::not_found)?;
    let name = req.name.unwrap_or_else(|| req.target.clone());
    wharf_store::validate_app_name(&name)
        .map_err(|e| ApiError::invalid(format!("schedule name: {e}")))?;
    let template =
        wharf_backup::retention::Template::parse(req.template.as_deref().unwrap_or("production"))
            .map_err(|e| ApiError::invalid(format!("template: {e}")))?;
    let cron = match req.cron {
        Some(c) => c,
        None => wharf_backup::schedule::default_cron(&template).to_string(),
    };
    let parsed = wharf_backup::schedule::Cron::parse(&cron)
        .map_err(|e| ApiError::invalid(format!("cron: {e}")))?;
    if parsed.next_after(c.backups.clock.now()).is_none() {
        return Err(ApiError::invalid(format!(
            "cron `{cron}` never comes round (check the day and month)"
        )));
    }
    if c.store.schedules()?.iter().any(|s| s.name == name) {
        return Err(ApiError::conflict(format!(
            "schedule \"{name}\" already exists"
        )));
    }
    let s = c.store.add_schedule(&Schedule {
        name,
        target: req.target,
        cron,
        template: template.to_string(),
        created_at: c.backups.clock.now(),
    })?;
    Ok((StatusCode::CREATED, Json(schedule_view(s))))
}

pub(crate) async fn remove_schedule(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    c.store.remove_schedule(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn alerts(State(c): State<Arc<Control>>) -> ApiResult<Json<Vec<AlertView>>> {
    Ok(Json(
        c.store.alerts(100)?.into_iter().map(alert_view).collect(),
    ))
}
