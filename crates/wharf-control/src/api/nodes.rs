//! `/nodes`: machines running `wharf agent` (invite, list, remove) and the Swarm's nodes;
//! `/tunnels`: TCP tunnels over the links.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use wharf_client::dto::{
    AddNode, AgentView, NodeInvite, NodeView, NodesView, TaskView, TunnelSpec,
};
use wharf_store::{StoreError, Tunnel};

use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use crate::Control;
use crate::nodes::{self, Hub, tunnels::SERVER};

fn hub(c: &Control) -> ApiResult<Arc<Hub>> {
    c.runtimes.hub().ok_or_else(|| {
        ApiError::unavailable(
            "the server's link is off: start it with `wharf server --link ADDR:PORT`",
        )
    })
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(crate) async fn list(State(c): State<Arc<Control>>) -> ApiResult<Json<NodesView>> {
    let mut view = NodesView::default();
    if let Some(hub) = c.runtimes.hub() {
        view.link = Some(hub.join_url().server);
        for n in c.store.nodes()? {
            let live = hub.node(&n.name);
            let info = live.info();
            let state = if live.link().is_some() {
                "connected"
            } else if n.joined_at.is_some() {
                "unreachable"
            } else {
                "invited"
            };
            view.agents.push(AgentView {
                state: state.to_string(),
                last_contact: info.last_contact.map(unix),
                version: info.version,
                apps: c.store.apps_on_node(&n.name)?,
                latency_ms: Hub::rtt(&live).map(|d| d.as_secs_f64() * 1000.0),
                addr: info.peer.map(|a| a.to_string()),
                name: n.name,
            });
        }
    }
    match c.runtimes.swarm() {
        Ok(swarm) => match swarm.nodes().await {
            Ok(nodes) => view.swarm = Some(nodes.into_iter().map(swarm_node).collect()),
            Err(e) => view.swarm_note = Some(e.to_string()),
        },
        Err(why) => view.swarm_note = Some(why),
    }
    Ok(Json(view))
}

fn swarm_node(n: wharf_docker::NodeInfo) -> NodeView {
    NodeView {
        id: n.id,
        hostname: n.hostname,
        addr: n.addr,
        state: n.state,
        availability: n.availability,
        manager: n.manager,
        tasks: n
            .tasks
            .into_iter()
            .map(|t| TaskView {
                app: t.app,
                id: t.id,
                state: t.state,
                addr: t.addr.map(|a| a.to_string()),
            })
            .collect(),
    }
}

/// Invites a machine: a one-time token, valid for an hour, and the command to run there.
pub(crate) async fn add(
    State(c): State<Arc<Control>>,
    ApiJson(req): ApiJson<AddNode>,
) -> ApiResult<(StatusCode, Json<NodeInvite>)> {
    let hub = hub(&c)?;
    if !nodes::valid_name(&req.name) {
        return Err(ApiError::invalid(format!(
            "`{}` is not a node name: lowercase letters, digits and - (at most 63), and not `server`",
            req.name
        )));
    }
    let lifetime = match &req.expires {
        None => nodes::TOKEN_LIFETIME,
        Some(e) => {
            let d = wharf_gateway::config::parse_duration(e)
                .map_err(|why| ApiError::invalid(format!("`expires`: {why}")))?;
            if d > std::time::Duration::from_secs(7 * 86400) {
                return Err(ApiError::invalid("`expires` is at most 7d"));
            }
            d
        }
    };
    let token = crate::auth::new_token();
    let expires_at = unix(SystemTime::now() + lifetime);
    match c
        .store
        .add_node_token(&req.name, &crate::auth::hash(&token), expires_at as i64)
    {
        Ok(()) => {}
        Err(StoreError::Exists { .. }) => {
            return Err(ApiError::conflict(format!(
                "node {} already joined; `wharf nodes remove {}` first to join that machine again",
                req.name, req.name
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let url = hub.join_url().to_string();
    Ok((
        StatusCode::CREATED,
        Json(NodeInvite {
            command: format!("wharf agent --join {url} --token {token}"),
            name: req.name,
            url,
            token,
            expires_at,
        }),
    ))
}

/// Forgets a node: its link is closed at once and its certificate refused from then on. Apps
/// placed on it must be moved or deleted first.
pub(crate) async fn remove(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let hub = hub(&c)?;
    match c.store.remove_node(&name) {
        Err(StoreError::NodeInUse { apps, .. }) if !apps.is_empty() => {
            return Err(ApiError::conflict(format!(
                "apps run on node {name}: {}; move them (`wharf apps set APP --node none`) or delete them first",
                apps.join(", ")
            )));
        }
        Err(StoreError::NodeInUse { tunnels, .. }) => {
            return Err(ApiError::conflict(format!(
                "tunnels use node {name}: {}; remove them first (`wharf tunnels remove NAME`)",
                tunnels.join(", ")
            )));
        }
        other => other?,
    }
    hub.forget(&name);
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn tunnels(State(c): State<Arc<Control>>) -> ApiResult<Json<Vec<TunnelSpec>>> {
    Ok(Json(
        c.store
            .tunnels()?
            .into_iter()
            .map(|t| TunnelSpec {
                warning: None,
                listen: format!("{}:{}", t.listen_node, t.listen_addr),
                to: format!("{}:{}", t.to_node, t.to_addr),
                name: t.name,
            })
            .collect(),
    ))
}

/// `NODE:[ADDR:]PORT` → (node, address); the address defaults to loopback.
fn end(what: &str, s: &str, default_ip: Option<IpAddr>) -> ApiResult<(String, SocketAddr)> {
    let bad = || {
        ApiError::invalid(format!(
            "`{what}`: `{s}` is not NODE:ADDR:PORT (e.g. db1:127.0.0.1:5432{})",
            if default_ip.is_some() {
                ", or NODE:PORT for the node's loopback, e.g. server:5432"
            } else {
                ""
            }
        ))
    };
    let (node, rest) = s.split_once(':').ok_or_else(bad)?;
    if node != SERVER && !nodes::valid_name(node) {
        return Err(bad());
    }
    let addr = match (rest.parse::<SocketAddr>(), rest.parse::<u16>(), default_ip) {
        (Ok(a), _, _) => a,
        (_, Ok(port), Some(ip)) => SocketAddr::new(ip, port),
        _ => {
            // `[::1]:5432` parses above; a bare IPv6 with a port does not.
            let (ip, port) = rest.rsplit_once(':').ok_or_else(bad)?;
            let ip: IpAddr = ip.trim_matches(['[', ']']).parse().map_err(|_| bad())?;
            SocketAddr::new(ip, port.parse().map_err(|_| bad())?)
        }
    };
    if addr.port() == 0 && what == "to" {
        return Err(bad());
    }
    Ok((node.to_string(), addr))
}

pub(crate) async fn add_tunnel(
    State(c): State<Arc<Control>>,
    ApiJson(req): ApiJson<TunnelSpec>,
) -> ApiResult<(StatusCode, Json<TunnelSpec>)> {
    let hub = hub(&c)?;
    if !nodes::valid_name(&req.name) {
        return Err(ApiError::invalid(format!(
            "`{}` is not a tunnel name: lowercase letters, digits and -",
            req.name
        )));
    }
    let (listen_node, listen) = end("listen", &req.listen, Some(Ipv4Addr::LOCALHOST.into()))?;
    let (to_node, to) = end("to", &req.to, None)?;
    for n in [&listen_node, &to_node] {
        if n != SERVER && c.store.node(n).is_err() {
            return Err(ApiError::invalid(format!(
                "there is no node \"{n}\" (add it with `wharf nodes add {n}`)"
            )));
        }
    }
    let t = Tunnel {
        name: req.name.clone(),
        listen_node,
        listen_addr: listen.to_string(),
        to_node,
        to_addr: to.to_string(),
        created_at: 0,
    };
    c.store.add_tunnel(&t)?;
    if let Err(e) = hub.tunnels.open(&hub, &t).await {
        // Nothing half-made: a tunnel that cannot listen is not kept.
        let _ = c.store.remove_tunnel(&t.name);
        return Err(ApiError::invalid(e));
    }
    Ok((
        StatusCode::CREATED,
        Json(TunnelSpec {
            warning: (!listen.ip().is_loopback()).then(|| {
                format!(
                    "{} listens on {listen} on {}, not on loopback: other machines can connect to it",
                    t.name, t.listen_node
                )
            }),
            name: t.name,
            listen: format!("{}:{}", t.listen_node, t.listen_addr),
            to: format!("{}:{}", t.to_node, t.to_addr),
        }),
    ))
}

pub(crate) async fn remove_tunnel(
    State(c): State<Arc<Control>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let hub = hub(&c)?;
    let t = c
        .store
        .tunnels()?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| StoreError::NotFound {
            what: "tunnel",
            name: name.clone(),
        })?;
    c.store.remove_tunnel(&name)?;
    hub.tunnels.close(&hub, &t).await;
    Ok(StatusCode::NO_CONTENT)
}
