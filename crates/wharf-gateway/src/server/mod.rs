//! Client-facing side: accepting connections and the per-request pipeline.

mod activity;
mod admin;
mod handler;
mod head;
mod listener;

pub(crate) use listener::{ConnInfo, Role, bind, spawn_accept_loop};
