//! The REST API's wire types ([`dto`]) and a typed client for them. The server
//! (`wharf-control`) serialises these same types, so the two cannot drift apart.
#![forbid(unsafe_code)]

pub mod dto;
