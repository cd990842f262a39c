//! `wharf users …` and `wharf tokens …`: who may use the server, with which role, and their
//! API tokens. Passwords are asked on the terminal without echo (twice), or read from
//! standard input with `--password-stdin`; they are never taken as arguments, which other
//! users of the machine could read in the process list.

use std::io::IsTerminal;

use clap::Subcommand;
use wharf_client::Client;
use wharf_client::dto::{CreateToken, CreateUser, RoleGrant, UserView};

use super::Conn;
use super::print::{json, table, when};

#[derive(Subcommand)]
pub(crate) enum UsersCmd {
    /// Users with their roles.
    List,
    /// Add a user with a first role, everywhere or on --app (on a terminal it asks for a
    /// password; empty: the user works with tokens only).
    Add {
        name: String,
        /// admin, deployer or viewer.
        #[arg(long, value_parser = ["admin", "deployer", "viewer"])]
        role: Option<String>,
        /// The role is on this app only (a collaborator).
        #[arg(long, requires = "role")]
        app: Option<String>,
        /// Read the password from standard input (its first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user with their roles and tokens.
    Remove { name: String },
    /// Set a user's password (your own, or anyone's as an admin).
    Passwd {
        name: String,
        /// Read the password from standard input (its first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give a user a role everywhere, or on --app (it replaces the role held there).
    Grant {
        name: String,
        #[arg(value_parser = ["admin", "deployer", "viewer"])]
        role: String,
        #[arg(long)]
        app: Option<String>,
    },
    /// Take a user's role everywhere away, or on --app.
    Revoke {
        name: String,
        #[arg(long)]
        app: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokensCmd {
    /// Your tokens (never their values), or --user's, or --all (admins).
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long, conflicts_with = "user")]
        all: bool,
    },
    /// Make a token and print it, alone on standard output: it is shown this once only.
    Create {
        name: String,
        /// Another user's (admins).
        #[arg(long)]
        user: Option<String>,
        /// It stops working after this many days.
        #[arg(long, value_name = "DAYS")]
        expires: Option<u32>,
    },
    /// Revoke a token: it is refused from the next request on.
    Revoke {
        name: String,
        /// Another user's (admins).
        #[arg(long)]
        user: Option<String>,
    },
}

/// "admin", "deployer on blog, viewer": a user's roles in a line.
fn roles(u: &UserView) -> String {
    if u.roles.is_empty() {
        return "-".into();
    }
    u.roles
        .iter()
        .map(|g| match &g.app {
            Some(a) => format!("{} on {a}", g.role),
            None => g.role.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The password from standard input's first line, or asked twice on the terminal without
/// echo; `None` when there is no terminal and `optional` (the user gets tokens only).
fn password(from_stdin: bool, optional: bool) -> anyhow::Result<Option<String>> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let p = line.trim_end_matches(['\n', '\r']).to_string();
        anyhow::ensure!(!p.is_empty(), "standard input held no password");
        return Ok(Some(p));
    }
    if !std::io::stdin().is_terminal() {
        if optional {
            return Ok(None);
        }
        anyhow::bail!("no terminal to ask the password in: give it with --password-stdin");
    }
    let prompt = if optional {
        "Password (empty: tokens only): "
    } else {
        "Password: "
    };
    let first = rpassword::prompt_password(prompt)?;
    if first.is_empty() && optional {
        return Ok(None);
    }
    let again = rpassword::prompt_password("The same password again: ")?;
    anyhow::ensure!(
        first == again,
        "the two passwords differ; nothing was changed"
    );
    Ok(Some(first))
}

pub(crate) async fn users(client: &Client, conn: &Conn, cmd: UsersCmd) -> anyhow::Result<()> {
    let shown = match cmd {
        UsersCmd::List => {
            let users = client.users().await?;
            if conn.json {
                return json(&users);
            }
            let rows = users
                .iter()
                .map(|u| {
                    vec![
                        u.name.clone(),
                        roles(u),
                        if u.has_password { "yes" } else { "no" }.into(),
                        when(u.created_at),
                    ]
                })
                .collect();
            table(&["NAME", "ROLES", "PASSWORD", "CREATED"], rows);
            return Ok(());
        }
        UsersCmd::Add {
            name,
            role,
            app,
            password_stdin,
        } => {
            let password = password(password_stdin, true)?;
            let req = CreateUser {
                name,
                password,
                role,
                app,
            };
            client.create_user(&req).await?
        }
        UsersCmd::Remove { name } => {
            client.remove_user(&name).await?;
            outln!("removed user {name} with their roles and tokens");
            return Ok(());
        }
        UsersCmd::Passwd {
            name,
            password_stdin,
        } => {
            let password = password(password_stdin, false)?;
            client.set_password(&name, password).await?;
            outln!("password of {name} set");
            return Ok(());
        }
        UsersCmd::Grant { name, role, app } => {
            client.grant(&name, &RoleGrant { role, app }).await?
        }
        UsersCmd::Revoke { name, app } => client.revoke_role(&name, app.as_deref()).await?,
    };
    if conn.json {
        return json(&shown);
    }
    outln!("{}: {}", shown.name, roles(&shown));
    Ok(())
}

pub(crate) async fn tokens(client: &Client, conn: &Conn, cmd: TokensCmd) -> anyhow::Result<()> {
    match cmd {
        TokensCmd::List { user, all } => {
            let user = if all { Some("*".to_string()) } else { user };
            let tokens = client.tokens(user.as_deref()).await?;
            if conn.json {
                return json(&tokens);
            }
            let or_dash = |t: Option<i64>| t.map_or("-".to_string(), when);
            let rows = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.user.clone(),
                        t.kind.clone(),
                        when(t.created_at),
                        or_dash(t.last_used_at),
                        or_dash(t.expires_at),
                    ]
                })
                .collect();
            table(
                &["NAME", "USER", "KIND", "CREATED", "LAST USED", "EXPIRES"],
                rows,
            );
        }
        TokensCmd::Create {
            name,
            user,
            expires,
        } => {
            let made = client
                .create_token(&CreateToken {
                    name,
                    user,
                    expires_days: expires,
                    password: None,
                })
                .await?;
            if conn.json {
                return json(&made);
            }
            // Alone on stdout, for `$(wharf tokens create ci)`; the rest goes to stderr.
            outln!("{}", made.token);
            eprintln!(
                "token {} of {}: shown this once only; keep it now",
                made.name, made.user
            );
        }
        TokensCmd::Revoke { name, user } => {
            client.revoke_token(&name, user.as_deref()).await?;
            outln!("revoked token {name}");
        }
    }
    Ok(())
}
