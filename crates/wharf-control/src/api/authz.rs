//! Who may do what. Every API route is classified here, by method and path, in one place:
//!
//! 1. reads (GET) need the viewer role: on the app for `/apps/{app}/…`, globally for the rest
//!    (`/status?apps=false`, the list of apps, which shows a user only the apps they have a
//!    role on, and the caller's own tokens need no role; `/databases/{db}/url` holds a password and needs
//!    admin);
//! 2. app changes (anything under `/apps/{app}/…`, and a `git push` to it) need deployer on
//!    the app or globally; creating an app needs deployer globally;
//! 3. everything else that changes something (users, others' tokens, nodes, tunnels,
//!    databases, backups) needs admin. The caller's own tokens, password and logout need no
//!    role.
//!
//! A refusal is 403 naming the role needed.

use http::Method;
use wharf_store::{Caller, Role};

use super::error::ApiError;

/// What a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// A valid token, nothing more.
    Token,
    /// `role` everywhere, or on the app named.
    Role(Role, Option<String>),
}

/// The highest role the caller holds on `app` (or, with `None`, everywhere).
pub(crate) fn role_on(caller: &Caller, app: Option<&str>) -> Option<Role> {
    caller
        .grants
        .iter()
        .filter(|g| g.app.is_none() || (app.is_some() && g.app.as_deref() == app))
        .map(|g| g.role)
        .max()
}

/// Whether the caller holds a role everywhere (rather than on single apps only).
pub(crate) fn global(caller: &Caller) -> bool {
    role_on(caller, None).is_some()
}

/// What `method path?query` needs; `path` is under `/api/v1`.
pub(crate) fn need(method: &Method, path: &str, query: Option<&str>, caller: &Caller) -> Need {
    let seg: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let read = method == Method::GET || method == Method::HEAD;
    let on_app = |role| match seg.get(1) {
        Some(app) => Need::Role(role, Some(app.to_string())),
        None => Need::Role(role, None),
    };
    match (read, seg.as_slice()) {
        // Anyone's own: their tokens (others' are checked in the handler), logout, status.
        (_, ["tokens", ..]) | (false, ["logout"]) => Need::Token,
        // The summary alone (what the dashboard checks a token with); with every app's state
        // it needs a role everywhere.
        (true, ["status"]) if query_param(query, "apps").as_deref() == Some("false") => Need::Token,
        (false, ["users", user, "password"]) if *user == caller.user => Need::Token,
        (true, ["apps"]) => Need::Token,
        (true, ["apps", ..]) => on_app(Role::Viewer),
        (false, ["apps"]) => Need::Role(Role::Deployer, None),
        (false, ["apps", ..]) => on_app(Role::Deployer),
        (true, ["databases", _, "url"]) => Need::Role(Role::Admin, None),
        (true, ["operations"]) => match query_param(query, "app") {
            Some(app) => Need::Role(Role::Viewer, Some(app)),
            None => Need::Role(Role::Viewer, None),
        },
        (true, _) => Need::Role(Role::Viewer, None),
        (false, _) => Need::Role(Role::Admin, None),
    }
}

/// What a request to an app's git repository needs: deployer to push, viewer to fetch.
pub(crate) fn need_git(app: &str, pushing: bool) -> Need {
    let role = if pushing {
        Role::Deployer
    } else {
        Role::Viewer
    };
    Need::Role(role, Some(app.to_string()))
}

/// Whether a git URL names a repository on the server's own disk (a path, `file://`, or a
/// `transport::address`), which the server would read with its own rights, rather than one
/// reached over the network (`https://`, `ssh://`, `git://`, `user@host:path`).
pub(crate) fn local_git(url: &str) -> bool {
    let url = url.trim();
    if let Some((scheme, _)) = url.split_once("://") {
        return !matches!(
            scheme.to_ascii_lowercase().as_str(),
            "http" | "https" | "ssh" | "git"
        );
    }
    // scp-like `[user@]host:path`: a colon before any slash, and not a transport's `::`.
    match url.find(':') {
        Some(i) => i == 0 || url[..i].contains('/') || url[i..].starts_with("::"),
        None => true,
    }
}

/// The first setting in `s` only an admin may give: a folder on the server's disk (the gateway
/// serves a static root, and fetches run, with the server's rights), the sandbox switched off,
/// or a git repository on the server's disk. Each reaches past the app, to the data folder's
/// tokens, database and keys.
pub(crate) fn admin_only(s: &wharf_client::dto::Settings) -> Option<&'static str> {
    if s.root.is_some() {
        Some("root")
    } else if s.workdir.is_some() {
        Some("workdir")
    } else if s.sandbox == Some(false) {
        Some("sandbox off")
    } else if s.git_url.as_deref().is_some_and(local_git) {
        Some("a git repository on the server's disk")
    } else {
        None
    }
}

/// Refuses `what` (an [`admin_only`] setting) to a caller who is not an admin.
pub(crate) fn check_admin_setting(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if role_on(caller, None) == Some(Role::Admin) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "{what} needs the admin role: it reaches past the app, with the server's own rights \
         ({} is not an admin; leave it out, or ask an admin to set it)",
        caller.user
    )))
}

/// Refuses (403, naming the role needed) what the caller may not do.
pub(crate) fn check(caller: &Caller, need: &Need) -> Result<(), ApiError> {
    let Need::Role(role, app) = need else {
        return Ok(());
    };
    if role_on(caller, app.as_deref()).is_some_and(|has| has >= *role) {
        return Ok(());
    }
    let whom = match app {
        Some(a) => format!("the {role} role on app {a} or everywhere"),
        None => format!("the {role} role"),
    };
    let has = match role_on(caller, app.as_deref()) {
        Some(r) => format!("{} is {r} there", caller.user),
        None => format!("{} has no role there", caller.user),
    };
    Err(ApiError::forbidden(format!(
        "this needs {whom}; {has} (an admin can grant it: wharf users grant {} {role}{})",
        caller.user,
        app.as_ref()
            .map(|a| format!(" --app {a}"))
            .unwrap_or_default()
    )))
}

#[cfg(test)]
mod admin_settings {
    use super::*;

    #[test]
    fn local_repositories_are_told_from_remote_ones() {
        for local in [
            "/var/lib/wharf/git/shop.git",
            "./repo",
            "repo",
            "file:///srv/repo",
            "ext::sh -c id",
        ] {
            assert!(local_git(local), "{local}");
        }
        for remote in [
            "https://github.com/a/b.git",
            "HTTP://example.com/r",
            "ssh://git@example.com/r",
            "git://example.com/r",
            "git@github.com:a/b.git",
        ] {
            assert!(!local_git(remote), "{remote}");
        }
    }
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key && !v.is_empty()).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_store::Grant;

    fn caller(grants: &[(Role, Option<&str>)]) -> Caller {
        Caller {
            expires_at: None,
            user: "ann".into(),
            token: "t".into(),
            session: false,
            grants: grants
                .iter()
                .map(|(role, app)| Grant {
                    role: *role,
                    app: app.map(String::from),
                })
                .collect(),
        }
    }

    #[test]
    fn routes_need_the_role_their_kind_of_change_needs() {
        let ann = caller(&[]);
        let check = |method: Method, path: &str, query: Option<&str>, expected: Need| {
            assert_eq!(
                need(&method, path, query, &ann),
                expected,
                "{method} {path}"
            );
        };
        let app = |r| Need::Role(r, Some("blog".to_string()));
        let global = |r| Need::Role(r, None);
        check(Method::GET, "/status", Some("apps=false"), Need::Token);
        check(Method::GET, "/status", None, global(Role::Viewer));
        check(Method::GET, "/apps", None, Need::Token);
        check(Method::GET, "/apps/blog", None, app(Role::Viewer));
        check(
            Method::GET,
            "/apps/blog/releases/3/log",
            None,
            app(Role::Viewer),
        );
        check(Method::POST, "/apps", None, global(Role::Deployer));
        check(Method::POST, "/apps/blog/deploy", None, app(Role::Deployer));
        check(Method::DELETE, "/apps/blog", None, app(Role::Deployer));
        check(Method::PATCH, "/apps/blog", None, app(Role::Deployer));
        check(
            Method::POST,
            "/apps/blog/webhook",
            None,
            app(Role::Deployer),
        );
        check(Method::GET, "/operations", None, global(Role::Viewer));
        check(
            Method::GET,
            "/operations",
            Some("limit=5&app=blog"),
            app(Role::Viewer),
        );
        check(Method::GET, "/nodes", None, global(Role::Viewer));
        check(Method::GET, "/databases/pg/url", None, global(Role::Admin));
        check(
            Method::POST,
            "/databases/pg/links",
            None,
            global(Role::Admin),
        );
        check(Method::POST, "/users", None, global(Role::Admin));
        check(Method::PUT, "/users/bob/roles", None, global(Role::Admin));
        check(Method::PUT, "/users/ann/password", None, Need::Token);
        check(
            Method::PUT,
            "/users/bob/password",
            None,
            global(Role::Admin),
        );
        check(Method::POST, "/tokens", None, Need::Token);
        check(Method::DELETE, "/tokens/laptop", None, Need::Token);
        check(Method::POST, "/logout", None, Need::Token);
        check(Method::POST, "/backups", None, global(Role::Admin));
    }

    #[test]
    fn a_role_on_one_app_counts_there_only_and_refusals_name_the_role() {
        let ann = caller(&[(Role::Viewer, None), (Role::Deployer, Some("blog"))]);
        let on = |r, a: &str| Need::Role(r, Some(a.to_string()));
        assert!(check(&ann, &on(Role::Deployer, "blog")).is_ok());
        assert!(check(&ann, &on(Role::Viewer, "shop")).is_ok());
        let err = check(&ann, &on(Role::Deployer, "shop")).unwrap_err();
        assert_eq!(err.status, http::StatusCode::FORBIDDEN);
        assert!(
            err.message.contains("deployer role on app shop")
                && err.message.contains("ann is viewer there"),
            "{}",
            err.message
        );
        assert!(check(&ann, &Need::Role(Role::Admin, None)).is_err());
        assert!(global(&ann));
        assert!(!global(&caller(&[(Role::Admin, Some("blog"))])));
    }
}
