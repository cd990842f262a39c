//! Consistent dumps, restores into a running server, and counting what a database holds.
//!
//! Dumps: postgres custom format (`pg_dump -Fc`), mariadb SQL in one transaction
//! (`mariadb-dump --single-transaction`), redis an RDB snapshot the server forks and sends
//! (`redis-cli --rdb -`, a BGSAVE over the replication protocol: no access to the data folder).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::engine::{Engine, program};
use crate::error::{DbError, Result};
use crate::exec::{Input, run, write_atomic};
use crate::params::{HOST, Params};

/// What a restore (or a test restore) found in the database afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// For people: "3 tables, 1204 rows", "5 keys".
    pub summary: String,
    /// Tables in the database (0 for redis).
    pub tables: u64,
    /// Rows over all tables, or keys for redis.
    pub items: u64,
}

/// The trailer mariadb-dump writes last; without it the dump was cut short.
const MARIADB_TRAILER: &[u8] = b"-- Dump completed";

impl Params {
    /// A command whose stdout is a consistent dump of the database (password by environment).
    pub fn dump_command(&self) -> Command {
        let port = self.port.to_string();
        match self.engine {
            Engine::Postgres => {
                let mut cmd = Command::new(program(self.engine, "pg_dump"));
                cmd.args(["-w", "-Fc", "-h", HOST, "-p", &port, "-U", &self.user])
                    .args(["-d", &self.name])
                    .env("PGPASSWORD", &self.password);
                cmd
            }
            Engine::Mysql => {
                let mut cmd = Command::new(program(self.engine, "mariadb-dump"));
                cmd.args(["--no-defaults", "--protocol=TCP", "-h", HOST, "-P", &port])
                    .args(["-u", &self.user, "--single-transaction", "--routines"])
                    .args(["--triggers", "--events", "--hex-blob", "--no-tablespaces"])
                    .arg(&self.name)
                    .env("MYSQL_PWD", &self.password);
                cmd
            }
            Engine::Redis => {
                let mut cmd = Command::new(program(self.engine, "redis-cli"));
                cmd.args(["-h", HOST, "-p", &port, "--rdb", "-"])
                    .env("REDISCLI_AUTH", &self.password);
                cmd
            }
        }
    }

    /// Restores `dump` into this running server and reports what the database then holds.
    /// Postgres: `pg_restore --clean --if-exists --no-owner` in one transaction (a failed
    /// restore changes nothing); objects the dump does not know stay. MariaDB: the SQL runs
    /// table by table (each table is dropped and recreated; DDL is not transactional).
    /// Redis: [`DbError::NeedsStop`]; use [`Params::restore_offline`] while it is stopped.
    pub fn restore(&self, dump: &Path) -> Result<RestoreReport> {
        self.restore_until(dump, None)
    }

    pub(crate) fn restore_until(
        &self,
        dump: &Path,
        deadline: Option<Instant>,
    ) -> Result<RestoreReport> {
        check_dump(self.engine, dump)?;
        let port = self.port.to_string();
        let what = format!("restoring `{}`", dump.display());
        match self.engine {
            Engine::Postgres => {
                let mut cmd = Command::new(program(self.engine, "pg_restore"));
                cmd.args(["-w", "-h", HOST, "-p", &port, "-U", &self.user])
                    .args(["-d", &self.name, "--clean", "--if-exists", "--no-owner"])
                    .args(["--no-privileges", "--single-transaction"])
                    .arg(dump)
                    .env("PGPASSWORD", &self.password);
                run(cmd, &what, Input::Null, deadline, &self.password)?;
            }
            Engine::Mysql => {
                let cmd = self.client();
                run(cmd, &what, Input::File(dump), deadline, &self.password)?;
            }
            Engine::Redis => return Err(DbError::NeedsStop),
        }
        self.contents_until(deadline)
    }

    /// Redis only, with its server stopped: puts `dump` in place as the data folder's
    /// `dump.rdb` (atomically, owned like the folder), which the server loads when it starts.
    pub fn restore_offline(&self, dump: &Path) -> Result<u64> {
        if self.engine != Engine::Redis {
            return Err(DbError::Invalid {
                what: "offline restore for",
                value: self.engine.as_str().into(),
                rule: "only redis restores offline; use `restore` with the server running",
            });
        }
        check_dump(self.engine, dump)?;
        let file = std::fs::File::open(dump).map_err(|source| DbError::Io {
            what: "cannot open dump",
            path: dump.to_path_buf(),
            source,
        })?;
        let dest = self.data.join("dump.rdb");
        let n = write_atomic(&dest, file)?;
        own_like_folder(&dest, &self.data)?;
        Ok(n)
    }

    /// What the database holds now: tables and rows (exact counts), or keys.
    pub fn contents(&self) -> Result<RestoreReport> {
        self.contents_until(None)
    }

    pub(crate) fn contents_until(&self, deadline: Option<Instant>) -> Result<RestoreReport> {
        let tables_sql = match self.engine {
            Engine::Postgres => {
                "select format('%I.%I', schemaname, tablename) from pg_tables \
                 where schemaname not in ('pg_catalog', 'information_schema') order by 1"
            }
            Engine::Mysql => {
                "select table_name from information_schema.tables \
                 where table_schema = database() and table_type = 'BASE TABLE' order by 1"
            }
            Engine::Redis => {
                let info = self.query("INFO keyspace", deadline)?;
                let keys = keyspace_keys(&info);
                return Ok(report(0, keys));
            }
        };
        let tables: Vec<String> = self
            .query(tables_sql, deadline)?
            .lines()
            .map(|t| match self.engine {
                Engine::Mysql => format!("`{}`", t.replace('`', "``")),
                _ => t.to_string(),
            })
            .collect();
        if tables.is_empty() {
            return Ok(report(0, 0));
        }
        let counts: Vec<String> = tables
            .iter()
            .map(|t| format!("select count(*) as n from {t}"))
            .collect();
        let sql = format!("select sum(n) from ({}) as c", counts.join(" union all "));
        let rows = self.query(&sql, deadline)?;
        let rows = rows.parse().map_err(|_| DbError::Failed {
            what: "counting rows".into(),
            status: "unexpected answer".into(),
            stderr: rows,
        })?;
        Ok(report(tables.len() as u64, rows))
    }
}

fn report(tables: u64, items: u64) -> RestoreReport {
    let plural = |n: u64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let summary = if tables == 0 && items > 0 {
        plural(items, "key")
    } else if tables == 0 {
        "empty".to_string()
    } else {
        format!("{}, {}", plural(tables, "table"), plural(items, "row"))
    };
    RestoreReport {
        summary,
        tables,
        items,
    }
}

/// Sums `keys=N` over the `db<i>:` lines of `INFO keyspace`.
fn keyspace_keys(info: &str) -> u64 {
    info.lines()
        .filter(|l| l.starts_with("db"))
        .filter_map(|l| {
            l.split_once("keys=")?
                .1
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Refuses what is plainly not a complete dump of `engine`, before anything is touched.
pub(crate) fn check_dump(engine: Engine, path: &Path) -> Result<()> {
    let bad = |reason: &str| DbError::BadDump {
        engine: engine.as_str(),
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let io = |source| DbError::Io {
        what: "cannot read dump",
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut head = [0u8; 5];
    let n = read_up_to(&mut file, &mut head).map_err(io)?;
    let (magic, expected): (&[u8], _) = match engine {
        Engine::Postgres => (
            b"PGDMP",
            "a custom-format dump starts with PGDMP (pg_dump -Fc)",
        ),
        Engine::Redis => (b"REDIS", "an RDB file starts with REDIS"),
        Engine::Mysql => (b"", ""),
    };
    if !head[..n].starts_with(magic) || (engine == Engine::Mysql && n == 0) {
        return Err(bad(if n == 0 { "it is empty" } else { expected }));
    }
    if engine == Engine::Mysql {
        let len = file.metadata().map_err(io)?.len();
        let mut end = vec![0u8; 200.min(len as usize)];
        file.seek(SeekFrom::Start(len - end.len() as u64))
            .map_err(io)?;
        file.read_exact(&mut end).map_err(io)?;
        let complete = end
            .windows(MARIADB_TRAILER.len())
            .any(|w| w == MARIADB_TRAILER);
        if !complete {
            return Err(bad(
                "no `-- Dump completed` trailer at its end: it was cut short (or is no mariadb-dump output)",
            ));
        }
    }
    Ok(())
}

fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Gives `path` the owner of `folder` (a restore as root must stay readable by the server).
pub(crate) fn own_like_folder(path: &Path, folder: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = folder.metadata().map_err(|source| DbError::Io {
        what: "cannot inspect",
        path: folder.to_path_buf(),
        source,
    })?;
    if rustix::process::geteuid().is_root() {
        rustix::fs::chown(
            path,
            Some(rustix::fs::Uid::from_raw(meta.uid())),
            Some(rustix::fs::Gid::from_raw(meta.gid())),
        )
        .map_err(|e| DbError::Io {
            what: "cannot hand over",
            path: path.to_path_buf(),
            source: e.into(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_read_well() {
        assert_eq!(report(3, 1204).summary, "3 tables, 1204 rows");
        assert_eq!(report(1, 1).summary, "1 table, 1 row");
        assert_eq!(report(0, 5).summary, "5 keys");
        assert_eq!(report(0, 0).summary, "empty");
    }

    #[test]
    fn counts_keys_over_databases() {
        let info =
            "# Keyspace\r\ndb0:keys=5,expires=0,avg_ttl=0\r\ndb3:keys=2,expires=1,avg_ttl=9\r\n";
        assert_eq!(keyspace_keys(info), 7);
        assert_eq!(keyspace_keys("# Keyspace\r\n"), 0);
    }
}
