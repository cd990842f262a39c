//! One release: what it was built from, how it ended, and its kept build log (steps, timings,
//! and a failed build's error), linked from the releases table on the app's page.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use maud::html;

use crate::layout::{Flash, page};
use crate::pages::{State_, back, is_bad, now, session, state_badge, when};

pub(crate) async fn release(
    State(d): State_,
    headers: HeaderMap,
    Path((name, number)): Path<(String, String)>,
) -> Response {
    let (s, client) = match session(&d, &headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let app_page = format!("/apps/{name}");
    let Ok(n) = number.parse::<u32>() else {
        return back(
            &app_page,
            Err(format!("“{number}” is not a release number.")),
        );
    };
    let (r, log) = tokio::join!(client.release(&name, n), client.release_log(&name, n));
    let r = match r {
        Ok(r) => r,
        Err(e) => return back(&app_page, Err(e.to_string())),
    };
    let t = now();
    let title = format!("{name} release {n}");
    let body = html! {
        p.crumbs { a href="/" { "Apps" } " › " a href=(app_page) { (name) } " › release " (n) }
        h1 { "Release " (n) " " (state_badge(&r.status)) }
        @if !r.message.is_empty() {
            @if is_bad(&r.status) { pre.failure role="alert" { (r.message) } } @else { p { (r.message) } }
        }
        section.card {
            h2 { "Release" }
            dl.kv {
                dt { "App" } dd { a href=(app_page) { (name) } }
                dt { "Made" } dd { (when(t, r.created_at)) }
                dt { "Source" } dd { (r.source) }
                @if let Some(c) = &r.commit { dt { "Commit" } dd { code { (c) } } }
                @if !r.build.is_empty() { dt { "Build" } dd { code { (r.build) } } }
                @if let Some(run) = &r.run { dt { "Run" } dd { code { (run) } } }
                @if let Some(dir) = &r.static_dir { dt { "Serves" } dd { code { (dir) } } }
                @if let Some(image) = &r.image { dt { "Image" } dd { code { (image) } } }
            }
        }
        section.card {
            h2 { "Build log" }
            @match &log {
                Ok(l) if !l.is_empty() => pre.log.build-log id="build-log" { (l) },
                Ok(_) => p.muted { "The build wrote nothing." },
                Err(e) if e.is_not_found() => p.muted { "No build log was kept for this release." },
                Err(e) => p.flash.err { (e.to_string()) },
            }
        }
    };
    page(&title, Some(&s.csrf), Flash::None, body).into_response()
}
