//! Reverse proxying to a site's upstreams: header rules, forwarding with retry of unsent
//! requests, WebSocket/upgrade tunnels, and streaming bodies through unbuffered.

mod client_body;
mod forward;
mod headers;

pub(crate) use forward::{
    Client, Due, Fetched, Forwarded, bodiless, forward, new_client, stripped_target,
};
pub(crate) use headers::{ip_header, is_hop_by_hop, strip_hop_by_hop};
