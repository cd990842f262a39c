//! `GET /api/v1/openapi.json`: the API described for tools and people. Kept beside the router;
//! a test checks that every route is documented.

use axum::Json;
use serde_json::{Value, json};

fn op(summary: &str, body: Option<&str>, ok: &str) -> Value {
    let mut v = json!({
        "summary": summary,
        "security": [{ "bearer": [] }],
        "responses": {
            ok: { "description": "success" },
            "4XX": { "description": "refused; `message` says what to fix",
                     "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
        }
    });
    if let Some(schema) = body {
        v["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
        });
    }
    v
}

fn app_param() -> Value {
    json!([{ "name": "app", "in": "path", "required": true, "schema": { "type": "string" } }])
}

pub(crate) fn spec() -> Value {
    let with_app = |mut v: Value| {
        v["parameters"] = app_param();
        v
    };
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": { "title": "wharf API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Apps, domains, env, lifecycle, logs and the operations log. Send `Authorization: Bearer <token>`." },
        "servers": [{ "url": "/api/v1" }],
        "paths": {
            "/status": { "get": {
                "summary": "Server and apps at a glance; `app_count` counts the apps",
                "security": [{ "bearer": [] }],
                "parameters": [
                    { "name": "apps", "in": "query", "schema": { "type": "boolean", "default": true },
                      "description": "false leaves the app list out (it costs a read of every app)" }
                ],
                "responses": { "200": { "description": "success" } }
            } },
            "/apps": {
                "get": apps_list(),
                "post": op("Create an app and start it", Some("CreateApp"), "201")
            },
            "/apps/{app}": {
                "get": with_app(op("Show an app with its instances", None, "200")),
                "patch": with_app(op("Change settings", Some("Settings"), "200")),
                "delete": {
                    "summary": "Delete an app and its hosts' certificates (volume and logs are kept unless `purge`)",
                    "security": [{ "bearer": [] }],
                    "parameters": [
                        { "name": "app", "in": "path", "required": true, "schema": { "type": "string" } },
                        { "name": "purge", "in": "query", "required": false, "schema": { "type": "boolean", "default": false },
                          "description": "also remove the volume, logs, code, releases, backups and git caches" }
                    ],
                    "responses": { "200": { "description": "the delete operation" } }
                }
            },
            "/apps/{app}/domains": { "post": with_app(op("Add a host name, or change its certificate source", Some("AddDomain"), "200")) },
            "/apps/{app}/domains/{host}": { "delete": {
                "summary": "Remove a host name",
                "security": [{ "bearer": [] }],
                "parameters": [
                    { "name": "app", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "host", "in": "path", "required": true, "schema": { "type": "string" } }
                ],
                "responses": { "200": { "description": "success" } }
            } },
            "/apps/{app}/env": {
                "get": with_app(op("Names of the app's variables (values are write-only)", None, "200")),
                "post": with_app(op("Set and unset variables", Some("ChangeEnv"), "200"))
            },
            "/apps/{app}/start": { "post": with_app(op("Enable and start", None, "200")) },
            "/apps/{app}/stop": { "post": with_app(op("Disable and stop", None, "200")) },
            "/apps/{app}/restart": { "post": with_app(op("Restart with zero downtime", None, "200")) },
            "/apps/{app}/scale": { "post": with_app(op("Set the number of instances", Some("Scale"), "200")) },
            "/apps/{app}/logs": { "get": {
                "summary": "Last lines of the app's log; `follow=true` streams new lines",
                "security": [{ "bearer": [] }],
                "parameters": [
                    { "name": "app", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "lines", "in": "query", "schema": { "type": "integer", "maximum": 10000 } },
                    { "name": "follow", "in": "query", "schema": { "type": "boolean" } }
                ],
                "responses": { "200": { "description": "text/plain lines" } }
            } },
            "/apps/{app}/deploy": { "post": with_app(op(
                "Deploy from git (JSON body) or a tar.gz archive (Content-Type: application/gzip); answers newline-delimited JSON: build output, then the operation",
                Some("DeployRequest"), "200")) },
            "/apps/{app}/releases": { "get": {
                "summary": "Releases, newest first, a page at a time",
                "security": [{ "bearer": [] }],
                "parameters": [
                    { "name": "app", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } },
                    { "name": "before", "in": "query", "schema": { "type": "integer" },
                      "description": "releases numbered below this (the last number of the previous page)" }
                ],
                "responses": paged_responses()
            } },
            "/apps/{app}/releases/{number}": { "get": {
                "summary": "One release",
                "security": [{ "bearer": [] }],
                "parameters": [
                    { "name": "app", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "number", "in": "path", "required": true, "schema": { "type": "integer" } }
                ],
                "responses": { "200": { "description": "the release" }, "404": { "description": "no such app or release" } }
            } },
            "/apps/{app}/releases/{number}/log": { "get": {
                "summary": "A release's whole build output (text), each line with the seconds since its deploy began",
                "security": [{ "bearer": [] }],
                "parameters": [
                    { "name": "app", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "number", "in": "path", "required": true, "schema": { "type": "integer" } }
                ],
                "responses": { "200": { "description": "text/plain" }, "404": { "description": "no such app or release, or no log kept" } }
            } },
            "/apps/{app}/rollback": { "post": with_app(op("Re-activate a kept release with its config", Some("Rollback"), "200")) },
            "/apps/{app}/webhook": {
                "get": with_app(op("Whether push webhooks are on, their URL and branch (never the secret)", None, "200")),
                "post": with_app(webhook_enable()),
                "delete": with_app(op("Turn push webhooks off (the secret is forgotten)", None, "200"))
            },
            "/apps/{app}/traffic": { "get": with_app(op("Requests/s, 5xx/s and mean latency over the last half hour", None, "200")) },
            "/certs": { "get": {
                "summary": "Every certificate: host, app, source, issuer, expiry, next renewal, last attempt",
                "security": [{ "bearer": [] }],
                "responses": { "200": { "description": "success" } }
            } },
            "/operations": { "get": {
                "summary": "Operations log, newest first, a page at a time",
                "security": [{ "bearer": [] }],
                "parameters": [
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 20 } },
                    { "name": "before", "in": "query", "schema": { "type": "integer" },
                      "description": "operations older than this id (the last id of the previous page)" },
                    { "name": "app", "in": "query", "schema": { "type": "string" } },
                    { "name": "kind", "in": "query", "schema": { "type": "string" }, "examples": ["deploy"] },
                    { "name": "status", "in": "query", "schema": { "enum": ["running", "succeeded", "failed"] } }
                ],
                "responses": paged_responses()
            } },
            "/operations/{id}": { "get": {
                "summary": "One operation with its actions",
                "security": [{ "bearer": [] }],
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }],
                "responses": { "200": { "description": "success" } }
            } },
            "/hooks/{app}": {
                "servers": [{ "url": "/" }],
                "post": {
                    "summary": "Push webhook (GitHub, Gitea, GitLab): signed with the app's secret, deploys pushes to its branch",
                    "parameters": [{ "name": "app", "in": "path", "required": true, "schema": { "type": "string" } }],
                    "responses": {
                        "200": { "description": "ping answered" },
                        "202": { "description": "deploy started, or the push was for another branch" },
                        "401": { "description": "missing or wrong signature; nothing deployed" }
                    }
                }
            },
            "/git/{app}.git": {
                "servers": [{ "url": "/" }],
                "description": "git smart HTTP (served by git http-backend): `git push http://wharf:<token>@host/git/<app>.git main` deploys the pushed branch",
                "get": { "summary": "git fetch/push discovery (info/refs)", "responses": { "200": { "description": "git protocol" }, "401": { "description": "token missing or wrong" } } },
                "post": { "summary": "git-upload-pack / git-receive-pack", "responses": { "200": { "description": "git protocol" }, "401": { "description": "token missing or wrong" } } }
            },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "success" } } } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error", "message"],
                           "properties": { "error": { "type": "string" }, "message": { "type": "string" } } },
                "Settings": { "type": "object", "additionalProperties": false, "properties": {
                    "run": { "type": "string", "description": "shell command; must listen on $PORT" },
                    "workdir": { "type": "string", "description": "absolute folder the command runs in" },
                    "root": { "type": "string", "description": "absolute folder a static app serves" },
                    "replicas": { "type": "integer", "minimum": 0, "maximum": 64 },
                    "memory": { "type": "string", "examples": ["256MB"] },
                    "cpu": { "type": "number", "examples": [0.5] },
                    "max_body": { "type": "string", "examples": ["10MB"] },
                    "health_path": { "type": "string", "examples": ["/up"] },
                    "availability": { "enum": ["enabled", "not-served", "disabled"] },
                    "git_url": { "type": "string" },
                    "git_ref": { "type": "string" },
                    "keep_releases": { "type": "integer", "minimum": 1, "maximum": 100 },
                    "hsts": { "type": "string", "examples": ["365d", "off"] },
                    "sandbox": { "type": "boolean", "description": "Run the app's processes and builds in the sandbox (default true)." },
                    "runtime": { "enum": ["process", "docker", "swarm"], "description": "What runs the app (default process)." },
                    "port": { "type": "integer", "minimum": 0, "maximum": 65535, "description": "Port the app listens on in its container (default 8000; 0 puts the default back)." },
                    "read_only": { "type": "boolean", "description": "Containers get a read-only root and a writable /tmp." },
                    "constraints": { "type": "array", "items": { "type": "string" }, "description": "Swarm placement constraints, e.g. node.labels.zone==a; [] removes them." },
                    "stop_grace": { "type": "string", "examples": ["30s"], "description": "Time between SIGTERM and SIGKILL when an instance stops (default 10s)." },
                    "node": { "type": "string", "description": "The node (a machine running `wharf agent`) it runs on; \"\" brings it back to the server's machine." }
                } },
                "CreateApp": { "type": "object", "required": ["name"], "additionalProperties": false, "properties": {
                    "name": { "type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$", "maxLength": 63 },
                    "kind": { "enum": ["process", "static"] },
                    "settings": { "$ref": "#/components/schemas/Settings" },
                    "domains": { "type": "array", "items": { "type": "string" } },
                    "env": { "type": "object", "additionalProperties": { "type": "string" } }
                } },
                "AddDomain": { "type": "object", "required": ["host"], "additionalProperties": false,
                               "properties": {
                    "host": { "type": "string" },
                    "tls": { "type": "string", "enum": ["acme", "self-signed", "manual", "none"] },
                    "cert_pem": { "type": "string", "description": "PEM chain, leaf first (tls: manual)" },
                    "key_pem": { "type": "string", "description": "PEM private key (tls: manual); never returned" }
                } },
                "ChangeEnv": { "type": "object", "additionalProperties": false, "properties": {
                    "set": { "type": "object", "additionalProperties": { "type": "string" } },
                    "unset": { "type": "array", "items": { "type": "string" } }
                } },
                "DeployRequest": { "type": "object", "additionalProperties": false, "properties": {
                    "git": { "type": "string", "description": "repository URL; default: the app's saved one" },
                    "ref": { "type": "string", "description": "branch, tag or commit; default: the app's branch, then main" },
                    "image": { "type": "string", "description": "deploy this image as it is (apps on docker or swarm)" }
                } },
                "Rollback": { "type": "object", "additionalProperties": false,
                              "properties": { "release": { "type": "integer", "minimum": 1 } } },
                "Scale": { "type": "object", "required": ["replicas"], "additionalProperties": false,
                           "properties": { "replicas": { "type": "integer", "minimum": 0, "maximum": 64 } } }
            }
        }
    });
    // Apart: one `json!` for the whole document would pass the macro's recursion limit.
    for more in [
        nodes_paths(),
        backups_paths(),
        run_paths(),
        accounts_paths(),
    ] {
        if let (Some(paths), Value::Object(more)) = (doc["paths"].as_object_mut(), more) {
            paths.extend(more);
        }
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.insert("RunRequest".into(), run_request());
    }
    doc
}

/// `POST /apps/{app}/run`: a one-off command, streamed.
fn run_paths() -> Value {
    json!({
        "/apps/{app}/run": { "post": {
            "summary": "Run a one-off command in the app's release folder, with its env, as its user and in its sandbox (process apps)",
            "description": "Answers newline-delimited JSON: `{\"stdout\": text}` and `{\"stderr\": text}` as the output comes, then one `{\"exit\": {code, signal, message, operation}}`, always last. The command is stopped (SIGKILL to its process group) at its timeout, past 64 MiB of output, or when the client closes the connection. Recorded as an operation of kind `run` (the command, env values masked, and how it ended).",
            "security": [{ "bearer": [] }],
            "parameters": app_param(),
            "requestBody": { "required": true, "content": { "application/json": {
                "schema": { "$ref": "#/components/schemas/RunRequest" } } } },
            "responses": {
                "200": { "description": "application/x-ndjson: output events, then `exit`" },
                "409": { "description": "the app has no release yet, runs elsewhere (a node) or in containers",
                         "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "4XX": { "description": "refused; `message` says what to fix",
                         "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        } }
    })
}

fn run_request() -> Value {
    json!({ "type": "object", "additionalProperties": false,
        "description": "either `command` or `shell`",
        "properties": {
            "command": { "type": "array", "items": { "type": "string" }, "description": "program and arguments, run as they are" },
            "shell": { "type": "string", "description": "a command line, run with /bin/sh -c" },
            "timeout_secs": { "type": "integer", "minimum": 1, "maximum": 86400, "default": 600 },
            "stdin": { "type": "string", "description": "given to the command on its standard input" }
        } })
}

/// The answers of a paged list: the page as a JSON array, its neighbours in `Link`.
fn paged_responses() -> Value {
    json!({
        "200": {
            "description": "a JSON array: one page, in the list's order",
            "headers": {
                "Link": { "schema": { "type": "string" },
                          "description": "`<URL>; rel=\"next\"` (and `rel=\"prev\"` for apps) when there is such a page (RFC 8288); follow it as it is" },
                "X-Total-Count": { "schema": { "type": "integer" },
                                   "description": "how many items match the filters (every page of them); not sent for apps filtered by `state`" }
            }
        },
        "400": { "description": "a parameter is malformed or out of range (`limit` above 1000); `message` says which",
                 "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
    })
}

/// `GET /apps`: pages in name order, with filters.
fn apps_list() -> Value {
    let text = json!({ "type": "string" });
    json!({
        "summary": "Apps in name order, a page at a time, with filters",
        "security": [{ "bearer": [] }],
        "parameters": [
            { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } },
            { "name": "after", "in": "query", "schema": text,
              "description": "names after this one (the last name of the previous page)" },
            { "name": "before", "in": "query", "schema": text,
              "description": "the names just before this one (the first name of the next page); not with `after`" },
            { "name": "prefix", "in": "query", "schema": text, "description": "names starting with this" },
            { "name": "q", "in": "query", "schema": text, "description": "names holding this (any case)" },
            { "name": "kind", "in": "query", "schema": { "enum": ["process", "static"] } },
            { "name": "state", "in": "query",
              "schema": { "enum": ["running", "stopped", "static", "not-served", "no-command", "crashed", "failed"] },
              "description": "the `state` the app shows now (no X-Total-Count with it)" }
        ],
        "responses": paged_responses()
    })
}

fn webhook_enable() -> Value {
    let mut o = op(
        "Turn push webhooks on: with the secret given (16-256 characters, not echoed), or a new one shown once",
        None,
        "200",
    );
    o["requestBody"] = body(&[], json!({ "secret": { "type": "string" } }));
    o["requestBody"]["required"] = json!(false);
    o
}

fn name_param(name: &str) -> Value {
    json!([{ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }])
}

fn body(required: &[&str], properties: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": {
        "type": "object", "required": required, "properties": properties
    } } } })
}

/// Managed databases and backups.
fn backups_paths() -> Value {
    let ok = json!({ "200": { "description": "success" } });
    let bearer = json!([{ "bearer": [] }]);
    json!({
        "/databases": {
            "get": { "summary": "Managed databases (the URL shown without its password)", "security": bearer, "responses": ok },
            "post": {
                "summary": "Create a database (`engine`: postgres, mysql or redis) and start it",
                "security": bearer,
                "requestBody": body(&["name", "engine"], json!({ "name": { "type": "string" }, "engine": { "type": "string" } })),
                "responses": { "201": { "description": "created and answering" }, "409": { "description": "the name is taken" } }
            }
        },
        "/databases/{db}": {
            "get": { "summary": "One database", "security": bearer, "parameters": name_param("db"), "responses": ok },
            "delete": {
                "summary": "Stop and forget a database (`?purge=true` removes its data too; its backups stay)",
                "security": bearer, "parameters": name_param("db"),
                "responses": { "204": { "description": "removed" } }
            }
        },
        "/databases/{db}/url": { "get": {
            "summary": "The database's URL with its password (for `wharf db shell`)",
            "security": bearer, "parameters": name_param("db"), "responses": ok
        } },
        "/databases/{db}/links": { "post": {
            "summary": "Set the database's URL in an app's env (DATABASE_URL, REDIS_URL) and restart it without downtime",
            "security": bearer, "parameters": name_param("db"),
            "requestBody": body(&["app"], json!({ "app": { "type": "string" } })),
            "responses": ok
        } },
        "/backups": {
            "get": { "summary": "Backups (`?target=`, `?all=true` includes those retention removed)", "security": bearer, "responses": ok },
            "post": {
                "summary": "Take a backup of an app's volume or a database now; answers once it is verified or failed",
                "security": bearer,
                "requestBody": body(&["target"], json!({ "target": { "type": "string" } })),
                "responses": ok
            }
        },
        "/backups/check": { "get": { "summary": "Each schedule's freshness (ok, warn, crit) and alerts that could not be sent", "security": bearer, "responses": ok } },
        "/backups/repository": { "get": { "summary": "Where the repository is and how to open it with restic", "security": bearer, "responses": ok } },
        "/backups/restore": { "post": {
            "summary": "Restore a backup (after a backup of what is there), into the target or `to` another app / a new database",
            "security": bearer,
            "requestBody": body(&["target", "snapshot"], json!({ "target": { "type": "string" }, "snapshot": { "type": "string" }, "to": { "type": "string" } })),
            "responses": ok
        } },
        "/backups/schedules": {
            "get": { "summary": "Backup schedules", "security": bearer, "responses": ok },
            "post": {
                "summary": "Add a schedule: a target, a retention template (default production) and a cron expression (UTC)",
                "security": bearer,
                "requestBody": body(&["target"], json!({ "name": { "type": "string" }, "target": { "type": "string" }, "template": { "type": "string" }, "cron": { "type": "string" } })),
                "responses": { "201": { "description": "created" } }
            }
        },
        "/backups/schedules/{schedule}": { "delete": {
            "summary": "Remove a schedule (its backups stay)",
            "security": bearer, "parameters": name_param("schedule"),
            "responses": { "204": { "description": "removed" } }
        } },
        "/backups/alerts": { "get": { "summary": "Alerts sent about backups, and how each channel took them", "security": bearer, "responses": ok } }
    })
}

/// Login, users, roles and tokens. A refused call (the caller's roles do not allow it) is 403
/// with `error` `forbidden` and a message naming the role needed.
fn accounts_paths() -> Value {
    let ok = json!({ "200": { "description": "success" } });
    let gone = json!({ "204": { "description": "done" } });
    let bearer = json!([{ "bearer": [] }]);
    let text = json!({ "type": "string" });
    let new_token = json!({ "201": { "description": "`{name, user, token, expires_at}`: the token's value, shown this once only" } });
    json!({
        "/login": { "post": {
            "summary": "A user's name and password for a session token (works 12 hours); no bearer token needed",
            "requestBody": body(&["user", "password"], json!({ "user": text, "password": text })),
            "responses": { "201": new_token["201"], "401": { "description": "wrong user name or password" } }
        } },
        "/logout": { "post": { "summary": "Revoke the token this request carries", "security": bearer, "responses": gone } },
        "/users": {
            "get": { "summary": "Users with their roles (viewer)", "security": bearer, "responses": ok },
            "post": {
                "summary": "Add a user (admin), with an optional password and a first role everywhere or on `app`",
                "security": bearer,
                "requestBody": body(&["name"], json!({ "name": text, "password": text,
                    "role": { "enum": ["admin", "deployer", "viewer"] }, "app": text })),
                "responses": { "201": { "description": "created" }, "409": { "description": "the name is taken" } }
            }
        },
        "/users/{user}": { "delete": {
            "summary": "Remove a user with their roles and tokens (admin; never the last admin)",
            "security": bearer, "parameters": name_param("user"), "responses": gone
        } },
        "/users/{user}/password": { "put": {
            "summary": "Set a password (one's own, or anyone's for an admin); `null` removes it",
            "security": bearer, "parameters": name_param("user"),
            "requestBody": body(&["password"], json!({ "password": { "type": ["string", "null"] } })),
            "responses": gone
        } },
        "/users/{user}/roles": {
            "put": {
                "summary": "Give a role everywhere, or on `app` (replacing the one held there); admin",
                "security": bearer, "parameters": name_param("user"),
                "requestBody": body(&["role"], json!({ "role": { "enum": ["admin", "deployer", "viewer"] }, "app": text })),
                "responses": ok
            },
            "delete": {
                "summary": "Take the role everywhere away, or on `?app=`; admin",
                "security": bearer,
                "parameters": [
                    { "name": "user", "in": "path", "required": true, "schema": text },
                    { "name": "app", "in": "query", "schema": text }
                ],
                "responses": ok
            }
        },
        "/tokens": {
            "get": {
                "summary": "The caller's tokens (`?user=U`: U's, `?user=*`: everyone's, for admins); never their values",
                "security": bearer,
                "parameters": [{ "name": "user", "in": "query", "schema": text }],
                "responses": ok
            },
            "post": {
                "summary": "Make a token of the caller's (or of `user`'s, for admins), optionally expiring",
                "security": bearer,
                "requestBody": body(&["name"], json!({ "name": text, "user": text,
                    "expires_days": { "type": "integer", "minimum": 1 } })),
                "responses": new_token
            }
        },
        "/tokens/{name}": { "delete": {
            "summary": "Revoke one of the caller's tokens (`?user=U`: U's, for admins); refused at once from then on",
            "security": bearer,
            "parameters": [
                { "name": "name", "in": "path", "required": true, "schema": text },
                { "name": "user", "in": "query", "schema": text }
            ],
            "responses": gone
        } }
    })
}

/// Machines joined by links, and tunnels.
fn nodes_paths() -> Value {
    json!({
            "/nodes": {
                "get": {
                    "summary": "Machines running `wharf agent` (state, last contact, version, apps, link latency) and the Swarm's nodes with wharf's tasks",
                    "security": [{ "bearer": [] }],
                    "responses": { "200": { "description": "success" } }
                },
                "post": {
                    "summary": "Invite a machine: a one-time token (default 1 h, `expires`) and the `wharf agent --join` command to run there",
                    "security": [{ "bearer": [] }],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["name"],
                        "properties": { "name": { "type": "string" }, "expires": { "type": "string" } }
                    } } } },
                    "responses": { "201": { "description": "created" }, "409": { "description": "the node already joined" } }
                }
            },
            "/nodes/{node}": { "delete": {
                "summary": "Forget a node: its link is closed at once and refused from then on (409 while apps run on it)",
                "security": [{ "bearer": [] }],
                "parameters": [{ "name": "node", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "204": { "description": "removed" } }
            } },
            "/tunnels": {
                "get": {
                    "summary": "TCP tunnels over the links",
                    "security": [{ "bearer": [] }],
                    "responses": { "200": { "description": "success" } }
                },
                "post": {
                    "summary": "Add a tunnel: `listen` NODE:[ADDR:]PORT (loopback by default; `server` is this machine), `to` NODE:ADDR:PORT",
                    "security": [{ "bearer": [] }],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["name", "listen", "to"],
                        "properties": { "name": { "type": "string" }, "listen": { "type": "string" }, "to": { "type": "string" } }
                    } } } },
                    "responses": { "201": { "description": "created" } }
                }
            },
            "/tunnels/{tunnel}": { "delete": {
                "summary": "Close a tunnel",
                "security": [{ "bearer": [] }],
                "parameters": [{ "name": "tunnel", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "204": { "description": "removed" } }
            } }
    })
}

pub(crate) async fn document() -> Json<Value> {
    Json(spec())
}
