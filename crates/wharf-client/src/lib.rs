//! The REST API's wire types ([`dto`]) and a typed client for them ([`Client`]). The server
//! (`wharf-control`) serialises these same types, so the two cannot drift apart.
#![forbid(unsafe_code)]

mod client;
pub mod dto;

pub use client::{AppsQuery, Client, ClientError, OpsQuery, Page};
