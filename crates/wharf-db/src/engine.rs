//! The engines wharf manages and where their Debian binaries live.

use std::path::{Path, PathBuf};

use crate::error::{DbError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mysql,
    Redis,
}

/// Where programs are looked for: fixed system folders rather than the caller's `PATH`, so
/// the control plane and a user's shell find the same binaries.
const SYSTEM_BIN: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

impl Engine {
    pub fn parse(s: &str) -> Result<Engine> {
        match s.trim().to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(Engine::Postgres),
            "mysql" | "mariadb" => Ok(Engine::Mysql),
            "redis" => Ok(Engine::Redis),
            _ => Err(DbError::UnknownEngine(s.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Redis => "redis",
        }
    }

    /// The environment variable an app linked to this database gets its URL in.
    pub fn url_var(self) -> &'static str {
        match self {
            Engine::Postgres | Engine::Mysql => "DATABASE_URL",
            Engine::Redis => "REDIS_URL",
        }
    }

    /// The file name a dump of database `db` is stored under.
    pub fn dump_filename(self, db: &str) -> String {
        let ext = match self {
            Engine::Postgres => "pgdump",
            Engine::Mysql => "sql",
            Engine::Redis => "rdb",
        };
        format!("{db}.{ext}")
    }

    /// The Debian package that provides the engine's binaries.
    pub fn package(self) -> &'static str {
        match self {
            Engine::Postgres => "postgresql",
            Engine::Mysql => "mariadb-server",
            Engine::Redis => "redis-server",
        }
    }

    /// The programs this crate runs for the engine (server, clients, dump and restore tools).
    fn programs(self) -> &'static [&'static str] {
        match self {
            Engine::Postgres => &["initdb", "postgres", "psql", "pg_dump", "pg_restore"],
            Engine::Mysql => &["mariadb-install-db", "mariadbd", "mariadb", "mariadb-dump"],
            Engine::Redis => &["redis-server", "redis-cli"],
        }
    }

    /// Ok when every program the engine needs is installed; otherwise an error naming the
    /// missing one and the package to install.
    pub fn installed(self) -> Result<()> {
        for program in self.programs() {
            if find(self, program).is_none() {
                return Err(DbError::NotInstalled {
                    engine: self.as_str(),
                    program: program.to_string(),
                    package: self.package(),
                });
            }
        }
        Ok(())
    }
}

/// The absolute path of `program`, or its bare name when it is missing (the command then
/// fails saying so; callers check [`Engine::installed`] first).
pub(crate) fn program(engine: Engine, program: &str) -> PathBuf {
    find(engine, program).unwrap_or_else(|| PathBuf::from(program))
}

fn find(engine: Engine, program: &str) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = match engine {
        // Debian installs each major version side by side; the newest serves new clusters
        // and its pg_dump can read every older server.
        Engine::Postgres => postgres_bin().into_iter().collect(),
        _ => SYSTEM_BIN.iter().map(PathBuf::from).collect(),
    };
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

/// `/usr/lib/postgresql/<newest major>/bin`.
fn postgres_bin() -> Option<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            is_executable(&bin.join("postgres")).then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases() {
        for (s, e) in [
            ("postgres", Engine::Postgres),
            ("PostgreSQL", Engine::Postgres),
            ("mysql", Engine::Mysql),
            ("mariadb", Engine::Mysql),
            ("redis", Engine::Redis),
        ] {
            assert_eq!(Engine::parse(s).unwrap(), e);
        }
        let err = Engine::parse("mongo").unwrap_err().to_string();
        assert!(err.contains("mongo") && err.contains("postgres"), "{err}");
    }

    #[test]
    fn names_files_and_vars() {
        assert_eq!(Engine::Postgres.dump_filename("app"), "app.pgdump");
        assert_eq!(Engine::Mysql.dump_filename("app"), "app.sql");
        assert_eq!(Engine::Redis.dump_filename("app"), "app.rdb");
        assert_eq!(Engine::Redis.url_var(), "REDIS_URL");
        assert_eq!(Engine::Mysql.url_var(), "DATABASE_URL");
    }
}
