//! One managed database: its engine, name, credentials, port and data folder, and what to
//! run to reach it (URLs, the shell, readiness probes).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::RngExt;
use rand::distr::Alphanumeric;

use crate::engine::{Engine, program};
use crate::error::{DbError, Result};
use crate::exec::{Input, run, tail};

/// The loopback address every managed server listens on, and clients connect to.
pub(crate) const HOST: &str = "127.0.0.1";

#[derive(Clone, PartialEq, Eq)]
pub struct Params {
    pub engine: Engine,
    /// The database's name, which is wharf's name for it.
    pub name: String,
    pub user: String,
    pub password: String,
    pub port: u16,
    /// The database's own folder (its volume), private to the server's user.
    pub data: PathBuf,
}

// Hand-written so the password never reaches a log through `{:?}`.
impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Params")
            .field("engine", &self.engine)
            .field("name", &self.name)
            .field("user", &self.user)
            .field("password", &"****")
            .field("port", &self.port)
            .field("data", &self.data)
            .finish()
    }
}

impl Params {
    /// New credentials for database `name`: the user is derived from the name, the password
    /// is 32 random letters and digits (safe in URLs, shells and SQL literals alike).
    pub fn generate(engine: Engine, name: &str, port: u16, data: PathBuf) -> Params {
        let password = rand::rng()
            .sample_iter(Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        Params {
            engine,
            name: name.to_string(),
            user: user_for(name),
            password,
            port,
            data,
        }
    }

    /// Checks what the commands embed: names of letters, digits, `_` and `-` (at most 63),
    /// a URL-safe password, an absolute data folder without quotes or newlines. The
    /// commands assume this holds.
    pub fn check(&self) -> Result<()> {
        check_word("database name", &self.name)?;
        check_word("database user", &self.user)?;
        if self.password.is_empty() || !self.password.chars().all(is_word_char) {
            return Err(DbError::Invalid {
                what: "database password",
                value: "****".into(),
                rule: "it must be letters, digits, `_` and `-` only",
            });
        }
        let data = self.data.to_string_lossy();
        if !self.data.is_absolute() || data.contains(['"', '\'', '\n', '\\']) {
            return Err(DbError::Invalid {
                what: "data folder",
                value: data.into_owned(),
                rule: "it must be an absolute path without quotes, backslashes or newlines",
            });
        }
        Ok(())
    }

    /// What an app linked to the database gets in [`Engine::url_var`].
    pub fn url(&self) -> String {
        self.url_with(&self.password)
    }

    /// [`Params::url`] with the password masked, for display.
    pub fn redacted_url(&self) -> String {
        self.url_with("****")
    }

    fn url_with(&self, password: &str) -> String {
        let (user, port, name) = (&self.user, self.port, &self.name);
        match self.engine {
            Engine::Postgres => format!("postgres://{user}:{password}@{HOST}:{port}/{name}"),
            Engine::Mysql => format!("mysql://{user}:{password}@{HOST}:{port}/{name}"),
            Engine::Redis => format!("redis://:{password}@{HOST}:{port}/0"),
        }
    }

    /// An interactive client connected to the database (psql, mariadb, redis-cli); the
    /// password goes by environment, so `ps` never shows it. Scripts on stdin stop at the
    /// first error (psql).
    pub fn shell_command(&self) -> Command {
        let mut cmd = self.client();
        if self.engine == Engine::Postgres {
            cmd.args(["-v", "ON_ERROR_STOP=1"]);
        }
        cmd
    }

    /// A client with the connection flags and the password variable set.
    pub(crate) fn client(&self) -> Command {
        let port = self.port.to_string();
        match self.engine {
            Engine::Postgres => {
                let mut cmd = Command::new(program(self.engine, "psql"));
                cmd.args([
                    "-w", "-h", HOST, "-p", &port, "-U", &self.user, "-d", &self.name,
                ])
                .env("PGPASSWORD", &self.password)
                .env("PGCONNECT_TIMEOUT", "5");
                cmd
            }
            Engine::Mysql => {
                let mut cmd = Command::new(program(self.engine, "mariadb"));
                cmd.args(["--no-defaults", "--protocol=TCP", "--connect-timeout=5"])
                    .args(["-h", HOST, "-P", &port, "-u", &self.user, &self.name])
                    .env("MYSQL_PWD", &self.password);
                cmd
            }
            Engine::Redis => {
                let mut cmd = Command::new(program(self.engine, "redis-cli"));
                cmd.args(["-h", HOST, "-p", &port])
                    .env("REDISCLI_AUTH", &self.password);
                cmd
            }
        }
    }

    /// Runs one query (SQL, or a redis command's words) and returns its plain output.
    pub(crate) fn query(&self, query: &str, deadline: Option<Instant>) -> Result<String> {
        let mut cmd = self.client();
        match self.engine {
            Engine::Postgres => cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query]),
            Engine::Mysql => cmd.args(["-N", "-B", "-e", query]),
            Engine::Redis => cmd.args(query.split_whitespace()),
        };
        let what = format!("{} query on port {}", self.engine.as_str(), self.port);
        let out = run(cmd, &what, Input::Null, deadline, &self.password)?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// One readiness probe: an authenticated round trip. `Ok(false)` with the reason when the
    /// server does not answer (yet).
    pub(crate) fn probe(&self, deadline: Option<Instant>) -> Result<Result<(), String>> {
        let (query, expect) = match self.engine {
            Engine::Postgres | Engine::Mysql => ("select 1", "1"),
            Engine::Redis => ("PING", "PONG"),
        };
        match self.query(query, deadline) {
            Ok(out) if out == expect => Ok(Ok(())),
            // redis-cli exits 0 on error replies (NOAUTH, LOADING): they are in its stdout.
            Ok(out) => Ok(Err(tail(out.as_bytes(), &self.password))),
            Err(e @ DbError::Spawn { .. }) => Err(e),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    /// Waits until the server answers an authenticated query, polling for at most `within`.
    pub async fn ready(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let this = self.clone();
            let probe = tokio::task::spawn_blocking(move || this.probe(Some(deadline)))
                .await
                .unwrap_or_else(|e| Ok(Err(e.to_string())))?;
            match probe {
                Ok(()) => return Ok(()),
                Err(last) if Instant::now() >= deadline => {
                    return Err(self.not_ready(within, last));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub(crate) fn not_ready(&self, within: Duration, last: String) -> DbError {
        DbError::NotReady {
            engine: self.engine.as_str(),
            port: self.port,
            within,
            last,
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn check_word(what: &'static str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.chars().all(is_word_char)
        && !value.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(DbError::Invalid {
            what,
            value: value.to_string(),
            rule: "use 1 to 63 letters, digits, `_` and `-`, not starting with `-`",
        })
    }
}

/// A user name for database `name`: lower case, `_` for anything else, starting with a
/// letter, at most 32 characters (the shortest limit among the engines' tools).
fn user_for(name: &str) -> String {
    let mut user: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !user.starts_with(|c: char| c.is_ascii_lowercase()) {
        user.insert_str(0, "u_");
    }
    user.truncate(32);
    user
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(engine: Engine) -> Params {
        Params::generate(engine, "shop-db", 5433, "/var/vol/shop-db".into())
    }

    #[test]
    fn generated_credentials_are_safe_and_fresh() {
        let (a, b) = (params(Engine::Postgres), params(Engine::Postgres));
        assert_eq!(a.user, "shop_db");
        assert_eq!(a.password.len(), 32);
        assert_ne!(a.password, b.password);
        a.check().unwrap();
        assert_eq!(user_for("9lives"), "u_9lives");
    }

    #[test]
    fn urls_per_engine_and_redacted() {
        let p = params(Engine::Postgres);
        assert_eq!(
            p.url(),
            format!("postgres://shop_db:{}@127.0.0.1:5433/shop-db", p.password)
        );
        assert_eq!(
            p.redacted_url(),
            "postgres://shop_db:****@127.0.0.1:5433/shop-db"
        );
        let m = params(Engine::Mysql);
        assert!(m.url().starts_with("mysql://shop_db:"));
        let r = params(Engine::Redis);
        assert_eq!(r.redacted_url(), "redis://:****@127.0.0.1:5433/0");
        assert!(!format!("{r:?}").contains(&r.password));
    }

    #[test]
    fn check_refuses_what_commands_cannot_carry() {
        let mut p = params(Engine::Mysql);
        p.name = "a'b".into();
        assert!(
            p.check()
                .unwrap_err()
                .to_string()
                .contains("database name `a'b`")
        );
        let mut p = params(Engine::Mysql);
        p.password = "x'; drop".into();
        let err = p.check().unwrap_err().to_string();
        assert!(err.contains("password") && !err.contains("drop"), "{err}");
        let mut p = params(Engine::Redis);
        p.data = "relative".into();
        assert!(p.check().is_err());
    }
}
