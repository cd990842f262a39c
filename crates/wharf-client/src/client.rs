//! A typed async client for the REST API (plain HTTP; put TLS in front for remote use).

use bytes::Bytes;
use futures_util::Stream;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dto::{
    AddDomain, AppView, ChangeEnv, Changed, CreateApp, DeployEvent, DeployRequest, ErrorBody,
    OperationView, ReleaseView, Rollback, RunEvent, RunRequest, Scale, Settings, StatusView,
    WebhookView,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the wharf API at {url}: {reason}; is `wharf server` running?")]
    Connect { url: String, reason: String },
    /// The server refused; `message` says what to fix.
    #[error("{message}")]
    Api {
        status: u16,
        error: String,
        message: String,
    },
    #[error("unexpected answer from the API: {0}")]
    Decode(String),
    #[error("`{0}` is not an API address; use e.g. http://127.0.0.1:7070")]
    BadUrl(String),
}

pub(crate) type Result<T, E = ClientError> = std::result::Result<T, E>;

/// One page of a list: its items, and where its neighbours are (paths under the API's
/// `/api/v1`, taken from the `Link` header; `None` at the ends), with how many items match
/// (`X-Total-Count`, when the server counts them).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
    pub prev: Option<String>,
    pub total: Option<u64>,
}

/// What `GET /apps` is asked for; `None` leaves a parameter out.
#[derive(Debug, Clone, Default)]
pub struct AppsQuery {
    /// Apps per page (server default 100, at most 1000).
    pub limit: Option<u32>,
    /// Names after this one (the last name of the previous page).
    pub after: Option<String>,
    /// Names before this one (the first name of the next page).
    pub before: Option<String>,
    pub prefix: Option<String>,
    /// A part of the name.
    pub q: Option<String>,
    pub kind: Option<String>,
    pub state: Option<String>,
}

impl AppsQuery {
    /// The request's path under `/api/v1`, for [`Client::page`].
    pub fn path(&self) -> String {
        format!(
            "/apps{}",
            query(&[
                ("limit", self.limit.map(|l| l.to_string())),
                ("after", self.after.clone()),
                ("before", self.before.clone()),
                ("prefix", self.prefix.clone()),
                ("q", self.q.clone()),
                ("kind", self.kind.clone()),
                ("state", self.state.clone()),
            ])
        )
    }
}

/// What `GET /operations` is asked for; `None` leaves a parameter out.
#[derive(Debug, Clone, Default)]
pub struct OpsQuery {
    pub limit: Option<u32>,
    /// Operations older than this id (the last id of the previous page).
    pub before: Option<i64>,
    pub app: Option<String>,
    pub kind: Option<String>,
    pub status: Option<String>,
}

/// `?k=v&…` of the parameters given (escaped), or "" when none is.
fn query(params: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", seg(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// The `rel` targets of a `Link` header (RFC 8288), as paths under `/api/v1`.
fn links(value: &str) -> Vec<(String, String)> {
    value
        .split(',')
        .filter_map(|part| {
            let (target, params) = part.trim().strip_prefix('<')?.split_once('>')?;
            let rel = params.split(';').find_map(|p| {
                let v = p.trim().strip_prefix("rel=")?;
                Some(v.trim_matches('"').to_string())
            })?;
            // The server links with absolute paths; the client adds `/api/v1` itself.
            let path = target.strip_prefix("/api/v1").unwrap_or(target);
            Some((rel, path.to_string()))
        })
        .collect()
}

#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl Client {
    pub fn new(base_url: &str, token: Option<String>) -> Result<Client> {
        let base = base_url.trim_end_matches('/').to_string();
        let uri: Uri = base
            .parse()
            .map_err(|_| ClientError::BadUrl(base_url.to_string()))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ClientError::BadUrl(base_url.to_string()));
        }
        // A server that cannot be reached says so in seconds, not after the system's two
        // minutes of SYN retries (`wharf backups check` runs from monitoring).
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
        let http =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Ok(Client { base, token, http })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<http::Response<Incoming>> {
        let kind = if body.is_some() {
            "application/json"
        } else {
            ""
        };
        self.send_typed(method, path, body.unwrap_or_default(), kind)
            .await
    }

    async fn send_typed(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        kind: &str,
    ) -> Result<http::Response<Incoming>> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if !kind.is_empty() {
            req = req.header(header::CONTENT_TYPE, kind);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| ClientError::BadUrl(url.clone()))?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| ClientError::Connect {
                url: self.base.clone(),
                reason: root_cause(&e),
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => ClientError::Api {
                status: status.as_u16(),
                error: e.error,
                message: e.message,
            },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                error: "http".into(),
                message: format!("the API answered {status}"),
            },
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let body = body.map(|b| serde_json::to_vec(b).expect("request types serialise"));
        let resp = self.send(method, path, body).await?;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// A page of a list at `path` (under `/api/v1`), e.g. a `Page::next` of an earlier one.
    pub async fn page<T: DeserializeOwned>(&self, path: &str) -> Result<Page<T>> {
        let resp = self.send(Method::GET, path, None).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let rels = header("link").map(|l| links(&l)).unwrap_or_default();
        let rel = |name: &str| rels.iter().find(|(r, _)| r == name).map(|(_, p)| p.clone());
        let (next, prev) = (rel("next"), rel("prev"));
        let total = header("x-total-count").and_then(|t| t.parse().ok());
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?
            .to_bytes();
        let items =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(Page {
            items,
            next,
            prev,
            total,
        })
    }

    /// One page of apps in name order.
    pub async fn apps_page(&self, q: &AppsQuery) -> Result<Page<AppView>> {
        self.page(&q.path()).await
    }

    /// One page of the operations log, newest first.
    pub async fn operations_page(&self, q: &OpsQuery) -> Result<Page<OperationView>> {
        let path = format!(
            "/operations{}",
            query(&[
                ("limit", q.limit.map(|l| l.to_string())),
                ("before", q.before.map(|b| b.to_string())),
                ("app", q.app.clone()),
                ("kind", q.kind.clone()),
                ("status", q.status.clone()),
            ])
        );
        self.page(&path).await
    }

    /// One page of an app's releases, newest first.
    pub async fn releases_page(
        &self,
        app: &str,
        limit: Option<u32>,
        before: Option<u32>,
    ) -> Result<Page<ReleaseView>> {
        let path = format!(
            "/apps/{}/releases{}",
            seg(app),
            query(&[
                ("limit", limit.map(|l| l.to_string())),
                ("before", before.map(|b| b.to_string())),
            ])
        );
        self.page(&path).await
    }

    /// The server at a glance without its app list (`app_count` only).
    pub async fn status_summary(&self) -> Result<StatusView> {
        self.json(Method::GET, "/status?apps=false", None::<&()>)
            .await
    }

    /// The raw JSON of a GET, for `--json` output.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        self.json(Method::GET, path, None::<&()>).await
    }

    pub async fn status(&self) -> Result<StatusView> {
        self.json(Method::GET, "/status", None::<&()>).await
    }

    /// Every app, in name order (all pages, followed).
    pub async fn apps(&self) -> Result<Vec<AppView>> {
        let mut page = self
            .apps_page(&AppsQuery {
                limit: Some(1000),
                ..Default::default()
            })
            .await?;
        let mut all = std::mem::take(&mut page.items);
        while let Some(next) = page.next.take() {
            page = self.page(&next).await?;
            all.append(&mut page.items);
        }
        Ok(all)
    }

    pub async fn app(&self, name: &str) -> Result<AppView> {
        self.json(Method::GET, &format!("/apps/{}", seg(name)), None::<&()>)
            .await
    }

    pub async fn create_app(&self, req: &CreateApp) -> Result<Changed> {
        self.json(Method::POST, "/apps", Some(req)).await
    }

    pub async fn update_app(&self, name: &str, s: &Settings) -> Result<Changed> {
        self.json(Method::PATCH, &format!("/apps/{}", seg(name)), Some(s))
            .await
    }

    /// Deletes an app; `purge` also removes its volume, logs, code, releases and backups.
    pub async fn delete_app(&self, name: &str, purge: bool) -> Result<OperationView> {
        let query = if purge { "?purge=true" } else { "" };
        self.json(
            Method::DELETE,
            &format!("/apps/{}{query}", seg(name)),
            None::<&()>,
        )
        .await
    }

    /// Adds a domain with a certificate source (or changes the source of one the app has).
    pub async fn add_domain_with(&self, app: &str, body: &AddDomain) -> Result<Changed> {
        self.json(
            Method::POST,
            &format!("/apps/{}/domains", seg(app)),
            Some(body),
        )
        .await
    }

    pub async fn remove_domain(&self, app: &str, host: &str) -> Result<Changed> {
        self.json(
            Method::DELETE,
            &format!("/apps/{}/domains/{}", seg(app), seg(host)),
            None::<&()>,
        )
        .await
    }

    pub async fn env_names(&self, app: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Names {
            names: Vec<String>,
        }
        let n: Names = self
            .json(Method::GET, &format!("/apps/{}/env", seg(app)), None::<&()>)
            .await?;
        Ok(n.names)
    }

    pub async fn change_env(&self, app: &str, req: &ChangeEnv) -> Result<Changed> {
        self.json(Method::POST, &format!("/apps/{}/env", seg(app)), Some(req))
            .await
    }

    /// `start`, `stop` or `restart`.
    pub async fn action(&self, app: &str, verb: &str) -> Result<Changed> {
        self.json(
            Method::POST,
            &format!("/apps/{}/{verb}", seg(app)),
            None::<&()>,
        )
        .await
    }

    pub async fn scale(&self, app: &str, replicas: u32) -> Result<Changed> {
        self.json(
            Method::POST,
            &format!("/apps/{}/scale", seg(app)),
            Some(&Scale { replicas }),
        )
        .await
    }

    pub async fn logs(&self, app: &str, lines: u32) -> Result<String> {
        self.text(&format!("/apps/{}/logs?lines={lines}", seg(app)))
            .await
    }

    /// A text answer, whole.
    async fn text(&self, path: &str) -> Result<String> {
        let resp = self.send(Method::GET, path, None).await?;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(String::from_utf8_lossy(&bytes.to_bytes()).into_owned())
    }

    /// The last `lines`, then new lines as they are written, until the stream is dropped.
    pub async fn follow_logs(
        &self,
        app: &str,
        lines: u32,
    ) -> Result<impl Stream<Item = Result<Vec<u8>>> + use<>> {
        let resp = self
            .send(
                Method::GET,
                &format!("/apps/{}/logs?lines={lines}&follow=true", seg(app)),
                None,
            )
            .await?;
        Ok(split_lines(resp.into_body().into_data_stream()))
    }

    /// Deploys from git (`req`) or from an archive (bytes and `application/gzip` or
    /// `application/zip`); yields build output, then the operation.
    pub async fn deploy(
        &self,
        app: &str,
        req: &DeployRequest,
        archive: Option<(Vec<u8>, &str)>,
    ) -> Result<impl Stream<Item = Result<DeployEvent>> + use<>> {
        let path = format!("/apps/{}/deploy", seg(app));
        let resp = match archive {
            Some((bytes, kind)) => self.send_typed(Method::POST, &path, bytes, kind).await?,
            None => {
                self.send(
                    Method::POST,
                    &path,
                    Some(serde_json::to_vec(req).expect("serialisable")),
                )
                .await?
            }
        };
        // Newline-delimited JSON, one event a line.
        let lines =
            futures_util::StreamExt::map(split_lines(resp.into_body().into_data_stream()), |l| {
                l.and_then(|line| {
                    serde_json::from_slice::<DeployEvent>(&line)
                        .map_err(|e| ClientError::Decode(e.to_string()))
                })
            });
        Ok(lines)
    }

    /// Runs a one-off command in the app's release (`POST /apps/{app}/run`); yields its output
    /// as it comes, then how it ended. Dropping the stream ends the command.
    pub async fn run(
        &self,
        app: &str,
        req: &RunRequest,
    ) -> Result<impl Stream<Item = Result<RunEvent>> + use<>> {
        let resp = self
            .send(
                Method::POST,
                &format!("/apps/{}/run", seg(app)),
                Some(serde_json::to_vec(req).expect("serialisable")),
            )
            .await?;
        let lines =
            futures_util::StreamExt::map(split_lines(resp.into_body().into_data_stream()), |l| {
                l.and_then(|line| {
                    serde_json::from_slice::<RunEvent>(&line)
                        .map_err(|e| ClientError::Decode(e.to_string()))
                })
            });
        Ok(lines)
    }

    /// The app's latest releases (the server's default page), newest first.
    pub async fn release(&self, app: &str, number: u32) -> Result<ReleaseView> {
        self.json(
            Method::GET,
            &format!("/apps/{}/releases/{number}", seg(app)),
            None::<&()>,
        )
        .await
    }

    /// A release's kept build output.
    pub async fn release_log(&self, app: &str, number: u32) -> Result<String> {
        self.text(&format!("/apps/{}/releases/{number}/log", seg(app)))
            .await
    }

    pub async fn releases(&self, app: &str) -> Result<Vec<ReleaseView>> {
        Ok(self.releases_page(app, None, None).await?.items)
    }

    pub async fn rollback(&self, app: &str, release: Option<u32>) -> Result<Changed> {
        self.json(
            Method::POST,
            &format!("/apps/{}/rollback", seg(app)),
            Some(&Rollback { release }),
        )
        .await
    }

    /// Turns the app's push webhooks on with `secret`, or a new random secret returned this
    /// once; the old secret stops working.
    pub async fn enable_webhook(&self, app: &str, secret: Option<&str>) -> Result<WebhookView> {
        let body = secret.map(|s| serde_json::json!({ "secret": s }));
        self.json(
            Method::POST,
            &format!("/apps/{}/webhook", seg(app)),
            body.as_ref(),
        )
        .await
    }

    /// Turns the app's push webhooks off.
    pub async fn disable_webhook(&self, app: &str) -> Result<crate::dto::Message> {
        self.json(
            Method::DELETE,
            &format!("/apps/{}/webhook", seg(app)),
            None::<&()>,
        )
        .await
    }

    pub async fn traffic(&self, app: &str) -> Result<crate::dto::TrafficView> {
        self.json(
            Method::GET,
            &format!("/apps/{}/traffic", seg(app)),
            None::<&()>,
        )
        .await
    }

    pub async fn nodes(&self) -> Result<crate::dto::NodesView> {
        self.json(Method::GET, "/nodes", None::<&()>).await
    }

    /// Invites a machine: the one-time token and the command to run there.
    pub async fn add_node(
        &self,
        name: &str,
        expires: Option<String>,
    ) -> Result<crate::dto::NodeInvite> {
        let body = crate::dto::AddNode {
            name: name.to_string(),
            expires,
        };
        self.json(Method::POST, "/nodes", Some(&body)).await
    }

    pub async fn remove_node(&self, name: &str) -> Result<()> {
        self.send(Method::DELETE, &format!("/nodes/{}", seg(name)), None)
            .await
            .map(drop)
    }

    pub async fn tunnels(&self) -> Result<Vec<crate::dto::TunnelSpec>> {
        self.json(Method::GET, "/tunnels", None::<&()>).await
    }

    pub async fn add_tunnel(&self, t: &crate::dto::TunnelSpec) -> Result<crate::dto::TunnelSpec> {
        self.json(Method::POST, "/tunnels", Some(t)).await
    }

    pub async fn remove_tunnel(&self, name: &str) -> Result<()> {
        self.send(Method::DELETE, &format!("/tunnels/{}", seg(name)), None)
            .await
            .map(drop)
    }

    pub async fn databases(&self) -> Result<Vec<crate::dto::DatabaseView>> {
        self.json(Method::GET, "/databases", None::<&()>).await
    }

    pub async fn database(&self, name: &str) -> Result<crate::dto::DatabaseView> {
        self.json(
            Method::GET,
            &format!("/databases/{}", seg(name)),
            None::<&()>,
        )
        .await
    }

    pub async fn create_database(
        &self,
        body: &crate::dto::CreateDatabase,
    ) -> Result<crate::dto::DatabaseView> {
        self.json(Method::POST, "/databases", Some(body)).await
    }

    pub async fn delete_database(&self, name: &str, purge: bool) -> Result<()> {
        let query = if purge { "?purge=true" } else { "" };
        self.send(
            Method::DELETE,
            &format!("/databases/{}{query}", seg(name)),
            None,
        )
        .await
        .map(drop)
    }

    /// The database's URL with its password (for `db shell`).
    pub async fn database_url(&self, name: &str) -> Result<crate::dto::DatabaseUrl> {
        self.json(
            Method::GET,
            &format!("/databases/{}/url", seg(name)),
            None::<&()>,
        )
        .await
    }

    pub async fn link_database(&self, db: &str, app: &str) -> Result<Changed> {
        self.json(
            Method::POST,
            &format!("/databases/{}/links", seg(db)),
            Some(&crate::dto::LinkDatabase {
                app: app.to_string(),
            }),
        )
        .await
    }

    /// Backups, newest first; `all` includes those retention removed.
    pub async fn backups(
        &self,
        target: Option<&str>,
        all: bool,
    ) -> Result<Vec<crate::dto::BackupView>> {
        let mut path = format!("/backups?all={all}");
        if let Some(t) = target {
            path.push_str(&format!("&target={}", seg(t)));
        }
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// Takes a backup now and answers once it is verified (or failed).
    pub async fn run_backup(&self, target: &str) -> Result<crate::dto::BackupView> {
        self.json(
            Method::POST,
            "/backups",
            Some(&crate::dto::RunBackup {
                target: target.to_string(),
            }),
        )
        .await
    }

    pub async fn backups_check(&self) -> Result<crate::dto::CheckView> {
        self.json(Method::GET, "/backups/check", None::<&()>).await
    }

    pub async fn backup_repository(&self) -> Result<crate::dto::RepositoryView> {
        self.json(Method::GET, "/backups/repository", None::<&()>)
            .await
    }

    pub async fn restore_backup(
        &self,
        body: &crate::dto::RestoreRequest,
    ) -> Result<crate::dto::RestoreView> {
        self.json(Method::POST, "/backups/restore", Some(body))
            .await
    }

    pub async fn schedules(&self) -> Result<Vec<crate::dto::ScheduleSpec>> {
        self.json(Method::GET, "/backups/schedules", None::<&()>)
            .await
    }

    pub async fn add_schedule(
        &self,
        body: &crate::dto::ScheduleSpec,
    ) -> Result<crate::dto::ScheduleSpec> {
        self.json(Method::POST, "/backups/schedules", Some(body))
            .await
    }

    pub async fn remove_schedule(&self, name: &str) -> Result<()> {
        self.send(
            Method::DELETE,
            &format!("/backups/schedules/{}", seg(name)),
            None,
        )
        .await
        .map(drop)
    }

    pub async fn alerts(&self) -> Result<Vec<crate::dto::AlertView>> {
        self.json(Method::GET, "/backups/alerts", None::<&()>).await
    }

    pub async fn certs(&self) -> Result<Vec<crate::dto::CertView>> {
        self.json(Method::GET, "/certs", None::<&()>).await
    }

    pub async fn operations(&self, app: Option<&str>, limit: u32) -> Result<Vec<OperationView>> {
        let path = match app {
            Some(a) => format!("/operations?app={}&limit={limit}", seg(a)),
            None => format!("/operations?limit={limit}"),
        };
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// A session token (12 hours) for a user's name and password; needs no token itself.
    pub async fn login(&self, user: &str, password: &str) -> Result<crate::dto::NewToken> {
        let body = crate::dto::LoginRequest {
            user: user.to_string(),
            password: password.to_string(),
        };
        self.json(Method::POST, "/login", Some(&body)).await
    }

    /// Revokes the token this client uses.
    pub async fn logout(&self) -> Result<()> {
        self.send(Method::POST, "/logout", None).await.map(drop)
    }

    pub async fn users(&self) -> Result<Vec<crate::dto::UserView>> {
        self.json(Method::GET, "/users", None::<&()>).await
    }

    pub async fn create_user(&self, req: &crate::dto::CreateUser) -> Result<crate::dto::UserView> {
        self.json(Method::POST, "/users", Some(req)).await
    }

    pub async fn remove_user(&self, name: &str) -> Result<()> {
        self.send(Method::DELETE, &format!("/users/{}", seg(name)), None)
            .await
            .map(drop)
    }

    /// Sets the user's password; `None` removes it (tokens only).
    pub async fn set_password(&self, name: &str, password: Option<String>) -> Result<()> {
        let body = serde_json::to_vec(&crate::dto::SetPassword {
            password,
            current: None,
        })
        .expect("request types serialise");
        self.send(
            Method::PUT,
            &format!("/users/{}/password", seg(name)),
            Some(body),
        )
        .await
        .map(drop)
    }

    /// Gives `name` a role everywhere or on one app.
    pub async fn grant(
        &self,
        name: &str,
        grant: &crate::dto::RoleGrant,
    ) -> Result<crate::dto::UserView> {
        self.json(
            Method::PUT,
            &format!("/users/{}/roles", seg(name)),
            Some(grant),
        )
        .await
    }

    /// Takes `name`'s role everywhere (`app` `None`) or on one app away.
    pub async fn revoke_role(&self, name: &str, app: Option<&str>) -> Result<crate::dto::UserView> {
        let path = format!(
            "/users/{}/roles{}",
            seg(name),
            query(&[("app", app.map(String::from))])
        );
        self.json(Method::DELETE, &path, None::<&()>).await
    }

    /// The caller's tokens, or `user`'s (`*`: everyone's) for admins.
    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<crate::dto::TokenView>> {
        let path = format!("/tokens{}", query(&[("user", user.map(String::from))]));
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// A new token; its value is in the answer, and nowhere ever again.
    pub async fn create_token(
        &self,
        req: &crate::dto::CreateToken,
    ) -> Result<crate::dto::NewToken> {
        self.json(Method::POST, "/tokens", Some(req)).await
    }

    pub async fn revoke_token(&self, name: &str, user: Option<&str>) -> Result<()> {
        let path = format!(
            "/tokens/{}{}",
            seg(name),
            query(&[("user", user.map(String::from))])
        );
        self.send(Method::DELETE, &path, None).await.map(drop)
    }
}

/// Keeps user input from changing the path: anything outside a DNS-ish alphabet is escaped.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

impl ClientError {
    /// True for 401: the token is missing or wrong.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Api { status, .. } if *status == StatusCode::UNAUTHORIZED.as_u16())
    }

    /// True for 404: what was asked for does not exist (or no longer).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status, .. } if *status == StatusCode::NOT_FOUND.as_u16())
    }
}

/// Whole lines (each with its `\n`; a last line without one at the end) from a body that
/// arrives in chunks cut anywhere.
fn split_lines<E: std::fmt::Display>(
    chunks: impl Stream<Item = std::result::Result<Bytes, E>> + Unpin,
) -> impl Stream<Item = Result<Vec<u8>>> {
    futures_util::stream::unfold(
        (chunks, Vec::<u8>::new(), false),
        |(mut chunks, mut buf, ended)| async move {
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    return Some((Ok(line), (chunks, buf, ended)));
                }
                if ended {
                    return (!buf.is_empty())
                        .then(|| (Ok(std::mem::take(&mut buf)), (chunks, Vec::new(), true)));
                }
                match futures_util::StreamExt::next(&mut chunks).await {
                    Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
                    Some(Err(e)) => {
                        let err = ClientError::Decode(e.to_string());
                        return Some((Err(err), (chunks, Vec::new(), true)));
                    }
                    None => {
                        return (!buf.is_empty())
                            .then(|| (Ok(std::mem::take(&mut buf)), (chunks, Vec::new(), true)));
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_cut_across_chunks_come_out_whole() {
        let chunks = futures_util::stream::iter(
            ["ab", "c\nde", "f\n", "tail"].map(|c| Ok::<_, std::io::Error>(Bytes::from(c))),
        );
        let got: Vec<Vec<u8>> = futures_util::StreamExt::collect::<Vec<_>>(split_lines(chunks))
            .await
            .into_iter()
            .map(|l| l.unwrap())
            .collect();
        assert_eq!(got, [&b"abc\n"[..], b"def\n", b"tail"]);
    }

    #[test]
    fn link_headers_give_paths_under_the_api() {
        let got = links(
            "</api/v1/apps?limit=2&after=b>; rel=\"next\", </api/v1/apps?limit=2&before=a>; rel=\"prev\"",
        );
        assert_eq!(
            got,
            [
                ("next".to_string(), "/apps?limit=2&after=b".to_string()),
                ("prev".to_string(), "/apps?limit=2&before=a".to_string())
            ]
        );
        assert_eq!(query(&[("a", None), ("q", Some("x y".into()))]), "?q=x%20y");
    }
}
