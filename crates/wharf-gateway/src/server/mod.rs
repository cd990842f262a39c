//! Client-facing side: accepting connections and the per-request pipeline.

mod activity;
mod admin;
mod h1;
mod handler;
mod head;
mod listener;
mod rewind;

pub(crate) use listener::{ConnInfo, Role, bind, spawn_accept_loop};
