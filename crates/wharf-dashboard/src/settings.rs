//! An app's settings form and its deletion: the form shows the current values and sends the API
//! only what was changed (so a field left alone is never re-validated or re-applied).

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use http::HeaderMap;
use maud::{Markup, html};
use wharf_client::dto::{AppView, Settings};

use crate::layout::csrf_field;
use crate::pages::{Fields, State_, back, change_app, changing, outcome};

/// A size as the API reads it back (`256MB`, `1GB`, or bytes).
fn size(b: u64) -> String {
    if b.is_multiple_of(1 << 30) {
        format!("{}GB", b >> 30)
    } else if b.is_multiple_of(1 << 20) {
        format!("{}MB", b >> 20)
    } else if b.is_multiple_of(1 << 10) {
        format!("{}KB", b >> 10)
    } else {
        b.to_string()
    }
}

/// HSTS as the API reads it back.
fn hsts(a: &AppView) -> String {
    match a.hsts_seconds {
        None => "off".into(),
        Some(s) if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        Some(s) => format!("{s}s"),
    }
}

fn cpu(a: &AppView) -> String {
    a.cpu.map(|c| format!("{c}")).unwrap_or_default()
}

/// The settings form. `release_run` is the live release's own command, which wins over the
/// app's (a Procfile or `wharf.toml`).
pub(crate) fn settings_card(a: &AppView, csrf: &str, release_run: Option<&str>) -> Markup {
    let is_static = a.kind == "static";
    let base = format!("/apps/{}", a.name);
    html! {
        section.card #settings {
            h2 { "Settings" }
            form.settings method="post" action={(base) "/settings"} {
                (csrf_field(csrf))
                @if is_static {
                    label { "Folder served" input name="root" value=(a.root.clone().unwrap_or_default()); }
                } @else {
                    label.wide { "Run command"
                        input name="run" value=(a.run.clone().unwrap_or_default()) placeholder="node server.js";
                        @if let Some(r) = release_run {
                            small.muted { "The live release brings its own (" code { (r) } "), which is what runs." }
                        }
                    }
                    label.wide { "Folder" input name="workdir" value=(a.workdir); }
                    label { "Health path" input name="health_path" value=(a.health_path.clone().unwrap_or_default()) placeholder="/up"; }
                    label { "Memory limit" input name="memory" value=(a.memory_bytes.map(size).unwrap_or_default()) placeholder="none, e.g. 256MB"; }
                    label { "CPU limit (cores)" input name="cpu" value=(cpu(a)) inputmode="decimal" placeholder="none, e.g. 0.5"; }
                    label { "Replicas" input name="replicas" type="number" min="0" max="64" value=(a.replicas); }
                    label { "Runtime" select name="runtime" {
                        @for v in ["process", "docker", "swarm"] {
                            option value=(v) selected[a.runtime == v] { (v) }
                        }
                    } }
                    label { "Node" input name="node" value=(a.node.clone().unwrap_or_default()) placeholder="this machine"; }
                }
                label { "HSTS" input name="hsts" value=(hsts(a)) placeholder="off, or e.g. 365d"; }
                label { "Availability" select name="availability" {
                    @for v in ["enabled", "not-served", "disabled"] {
                        option value=(v) selected[a.availability == v] { (v) }
                    }
                } }
                div.submit { button type="submit" { "Save settings" } }
            }
            @if let Some(note) = &a.limits_note { p.muted { "Limits: " (note) } }
        }
    }
}

/// Deleting the app: its name must be typed again; its volume is kept unless purge is ticked.
pub(crate) fn delete_card(a: &AppView, csrf: &str) -> Markup {
    html! {
        section.card.danger-zone #delete {
            h2 { "Delete this app" }
            p { "Stops it, removes its routes, domains' certificates and settings. "
                "Its volume and logs are kept for an app of the same name unless you purge them." }
            form.row method="post" action={"/apps/" (a.name) "/delete"} {
                (csrf_field(csrf))
                label { "Type " code { (a.name) } " to confirm"
                    input name="confirm" required autocomplete="off" pattern=(regex_escape(&a.name)) aria-label="App name to confirm"; }
                label.check { input type="checkbox" name="purge" value="true"; " Also delete its volume, logs, releases and backups" }
                button.danger type="submit" { "Delete " (a.name) }
            }
        }
    }
}

/// App names are `[a-z0-9-]`, which need no escaping in a pattern; anything else is escaped.
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = !(c.is_ascii_alphanumeric() || c == '-' || c == '_');
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// Saves the settings that differ from the app's current ones.
pub(crate) async fn save(
    State(d): State_,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let to = format!("/apps/{name}");
    let current = match changing(&d, &headers, &f) {
        Ok((_, client)) => match client.app(&name).await {
            Ok(a) => a,
            Err(e) => return back(&to, Err(e.to_string())),
        },
        Err(r) => return r,
    };
    let s = match changes(&current, &f) {
        Ok(s) => s,
        Err(e) => return back(&to, Err(e)),
    };
    if s == Settings::default() {
        return back(&to, Ok("Nothing changed.".into()));
    }
    change_app(&d, &headers, &name, &f, |c, name| async move {
        c.update_app(&name, &s).await
    })
    .await
}

/// The fields of `f` whose value differs from the app's, as a settings change.
fn changes(a: &AppView, f: &Fields) -> Result<Settings, String> {
    // A field changed: present, and not what the form showed.
    let changed = |k: &str, shown: &str| {
        f.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| v != shown)
    };
    let mut s = Settings {
        availability: changed("availability", &a.availability),
        // An emptied field means off, as the placeholder says.
        hsts: f
            .get("hsts")
            .map(|h| h.trim())
            .map(|h| if h.is_empty() { "off" } else { h })
            .filter(|h| *h != hsts(a))
            .map(str::to_string),
        ..Default::default()
    };
    if a.kind == "static" {
        s.root = changed("root", a.root.as_deref().unwrap_or("")).filter(|v| !v.is_empty());
        return Ok(s);
    }
    s.run = changed("run", a.run.as_deref().unwrap_or(""));
    if s.run.as_deref() == Some("") {
        return Err("The run command cannot be emptied; give a new one.".into());
    }
    s.workdir = changed("workdir", &a.workdir).filter(|v| !v.is_empty());
    s.health_path =
        changed("health_path", a.health_path.as_deref().unwrap_or("")).filter(|v| !v.is_empty());
    s.memory = changed("memory", &a.memory_bytes.map(size).unwrap_or_default());
    if s.memory.as_deref() == Some("") {
        return Err("A memory limit cannot be removed here once set; give a new one.".into());
    }
    s.cpu = match changed("cpu", &cpu(a)) {
        None => None,
        Some(c) => Some(
            c.parse::<f64>()
                .map_err(|_| format!("CPU limit “{c}” is not a number of cores (e.g. 0.5)."))?,
        ),
    };
    s.replicas = match changed("replicas", &a.replicas.to_string()) {
        None => None,
        Some(r) => Some(
            r.parse::<u32>()
                .map_err(|_| format!("Replicas “{r}” is not a whole number."))?,
        ),
    };
    s.runtime = changed("runtime", &a.runtime);
    s.node = changed("node", a.node.as_deref().unwrap_or(""));
    Ok(s)
}

/// Deletes the app once its name was typed again; back to the overview with the result.
pub(crate) async fn delete(
    State(d): State_,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let (_, client) = match changing(&d, &headers, &f) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let to = format!("/apps/{name}");
    if f.get("confirm").map(|c| c.trim()) != Some(name.as_str()) {
        return back(
            &to,
            Err(format!(
                "Not deleted: type the app's name, {name}, to confirm."
            )),
        );
    }
    let purge = f.get("purge").is_some_and(|p| p == "true" || p == "on");
    match client.delete_app(&name, purge).await {
        Ok(op) => match outcome(&op) {
            Ok(m) => back("/", Ok(format!("{name} deleted: {m}"))),
            Err(e) => back("/", Err(format!("{name} deleted, but: {e}"))),
        },
        Err(e) => back(&to, Err(e.to_string())),
    }
}
