//! The page frame every screen shares: header with navigation, flash messages, the assets.

use maud::{DOCTYPE, Markup, html};

/// A message shown at the top of a page: what an operation said, or why it failed.
pub(crate) enum Flash<'a> {
    None,
    Ok(&'a str),
    Err(&'a str),
}

pub(crate) fn page(title: &str, csrf: Option<&str>, flash: Flash<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · wharf" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "wharf" }
                    @if let Some(t) = csrf {
                        nav {
                            a href="/" { "Apps" }
                            a href="/backups" { "Backups" }
                            a href="/operations" { "Operations" }
                            a href="/users" { "Users" }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(t);
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main {
                    @match flash {
                        Flash::Ok(m) => p.flash.ok role="status" { (m) },
                        Flash::Err(m) => p.flash.err role="alert" { (m) },
                        Flash::None => {},
                    }
                    (body)
                }
            }
        }
    }
}

/// Hidden CSRF field for a form.
pub(crate) fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

pub(crate) fn bytes(n: Option<u64>) -> String {
    match n {
        None => "–".into(),
        Some(b) if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        Some(b) => format!("{:.0} KiB", b as f64 / 1024.0),
    }
}

pub(crate) fn ago(now: i64, t: i64) -> String {
    let d = (now - t).max(0);
    match d {
        0..=59 => format!("{d}s ago"),
        60..=3599 => format!("{}m ago", d / 60),
        3600..=86399 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86400),
    }
}
