//! The server as one shell command for the supervised process runtime: initialise the data
//! folder on first start, then `exec` the server in the foreground on 127.0.0.1 only.
//!
//! The password reaches the server by the environment (`WHARF_DB_PASSWORD`), never by argv:
//! postgres' initdb reads it from a file in `$TMPDIR` removed right after, mariadbd from an
//! init file that is a FIFO (the password never rests on disk), redis from its config on stdin.
//! A first start initialises into `<data>/<engine>.init` and renames it into place only once
//! complete, so an interrupted first start is redone rather than half-used.

use crate::engine::{Engine, program};
use crate::params::{HOST, Params};

/// The environment variable the server command reads the password from.
pub const PASSWORD_VAR: &str = "WHARF_DB_PASSWORD";

/// Where the command finds `mv`, `rm`, `mkfifo` (the engines' binaries are absolute paths).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Shared start of every script: strict mode, private files, the password's shape checked.
/// App users have no passwd entry, and initdb and postgres refuse a uid without a name: for
/// them a one-line passwd file, read through nss_wrapper (Debian's `libnss-wrapper`), names it.
const PRELUDE: &str = r#"set -eu
umask 077
t="${TMPDIR:-/tmp}"
case "${WHARF_DB_PASSWORD:-}" in
  ''|*[!A-Za-z0-9_-]*) echo 'wharf-db: WHARF_DB_PASSWORD must be set to letters, digits, _ and - only' >&2; exit 2;;
esac
if ! id -un >/dev/null 2>&1; then
  for nss in /usr/lib/*/libnss_wrapper.so; do :; done
  if [ -e "$nss" ]; then
    printf 'wharf-db:x:%s:%s:wharf database:%s:/usr/sbin/nologin\n' "$(id -u)" "$(id -g)" "$t" > "$t/passwd"
    printf 'wharf-db:x:%s:\n' "$(id -g)" > "$t/group"
    export LD_PRELOAD="$nss" NSS_WRAPPER_PASSWD="$t/passwd" NSS_WRAPPER_GROUP="$t/group"
  else
    echo "wharf-db: uid $(id -u) has no name, which postgres needs: install libnss-wrapper" >&2
  fi
fi
"#;

impl Params {
    /// One command for `/bin/sh -c`, run in any folder with [`Params::server_env`] plus
    /// `TMPDIR`: initialises `data` on first start, then execs the server on
    /// `127.0.0.1:{port}`. Call [`Params::check`] first.
    pub fn server_command(&self) -> String {
        let body = match self.engine {
            Engine::Postgres => self.postgres_script(),
            Engine::Mysql => self.mariadb_script(),
            Engine::Redis => self.redis_script(),
        };
        format!(
            "{PRELUDE}d={}\n{body}",
            sh_quote(&self.data.to_string_lossy())
        )
    }

    /// The environment the server command needs (the password and a `PATH`); the caller adds
    /// `TMPDIR`, a private writable folder.
    pub fn server_env(&self) -> Vec<(String, String)> {
        vec![
            (PASSWORD_VAR.into(), self.password.clone()),
            ("PATH".into(), PATH.into()),
        ]
    }

    fn postgres_script(&self) -> String {
        let bin = |p| sh_quote(&program(Engine::Postgres, p).to_string_lossy());
        let (initdb, postgres) = (bin("initdb"), bin("postgres"));
        let user = sh_quote(&self.user);
        let create = sh_quote(&format!(
            "CREATE DATABASE \"{}\" OWNER \"{}\"",
            self.name, self.user
        ));
        // Dynamic shared memory as SysV segments: the default (POSIX) lives in /dev/shm, out
        // of the sandbox's reach. No unix sockets: clients use TCP on loopback.
        let settings = "-c dynamic_shared_memory_type=sysv";
        format!(
            r#"if [ ! -f "$d/pg/PG_VERSION" ]; then
  echo 'wharf-db: initialising a new postgres cluster' >&2
  rm -rf "$d/pg.init"
  pw="$t/wharf-pw.$$"
  trap 'rm -f "$pw"' EXIT
  printf '%s\n' "$WHARF_DB_PASSWORD" > "$pw"
  {initdb} -D "$d/pg.init" -U {user} --pwfile="$pw" -A scram-sha-256 -E UTF8 --locale=C.UTF-8 >&2
  rm -f "$pw"
  trap - EXIT
  echo {create} | {postgres} --single -D "$d/pg.init" {settings} -c exit_on_error=on postgres >&2
  mv "$d/pg.init" "$d/pg"
fi
exec {postgres} -D "$d/pg" -c listen_addresses={HOST} -p {port} -c unix_socket_directories= {settings}
"#,
            port = self.port,
        )
    }

    fn mariadb_script(&self) -> String {
        let bin = |p| sh_quote(&program(Engine::Mysql, p).to_string_lossy());
        let (install, mariadbd) = (bin("mariadb-install-db"), bin("mariadbd"));
        let (name, user) = (&self.name, &self.user);
        // Idempotent, so every start (re)states the user, its password and its grant. The
        // writer hands it over through a FIFO (by environment, not argv) and gives up after
        // 60 s, should the server die before reading it.
        let sql = [
            format!("CREATE DATABASE IF NOT EXISTS `{name}`;"),
            format!("CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '$WHARF_DB_PASSWORD';"),
            format!("ALTER USER '{user}'@'%' IDENTIFIED BY '$WHARF_DB_PASSWORD';"),
            format!("GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'%';"),
        ]
        .map(|line| format!("\"{}\"", line.replace('`', "\\`")))
        .join(" ");
        format!(
            r#"if [ ! -d "$d/mariadb/mysql" ]; then
  echo 'wharf-db: initialising a new mariadb data folder' >&2
  rm -rf "$d/mariadb.init"
  {install} --no-defaults --datadir="$d/mariadb.init" --auth-root-authentication-method=socket --skip-test-db >&2
  mv "$d/mariadb.init" "$d/mariadb"
fi
init="$t/wharf-mariadb-init.sql"
rm -f "$init"
mkfifo -m 600 "$init"
sql=$(printf '%s\n' {sql})
WHARF_INIT_SQL="$sql" timeout 60 sh -c 'exec 3>"$1"; rm -f "$1"; printf "%s\n" "$WHARF_INIT_SQL" >&3' sh "$init" &
exec {mariadbd} --no-defaults --datadir="$d/mariadb" --bind-address={HOST} --port={port} --socket="$t/mariadb.sock" --pid-file="$t/mariadb.pid" --tmpdir="$t" --skip-name-resolve --init-file="$init"
"#,
            port = self.port,
        )
    }

    fn redis_script(&self) -> String {
        let server = sh_quote(&program(Engine::Redis, "redis-server").to_string_lossy());
        // Config on stdin: nothing with the password rests on disk. Disk-based replication
        // sync makes `redis-cli --rdb` (the dump) receive an exact-length snapshot.
        format!(
            r#"exec {server} - <<WHARF_REDIS_CONF
bind {HOST}
port {port}
protected-mode yes
daemonize no
logfile ""
dir "$d"
dbfilename dump.rdb
appendonly no
save 3600 1 300 100 60 10000
repl-diskless-sync no
requirepass $WHARF_DB_PASSWORD
WHARF_REDIS_CONF
"#,
            port = self.port,
        )
    }
}

/// Quotes `s` for the shell (single quotes; embedded ones closed, escaped and reopened).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_never_carry_the_password() {
        for engine in [Engine::Postgres, Engine::Mysql, Engine::Redis] {
            let p = Params::generate(engine, "app", 5000, "/vol/app".into());
            let cmd = p.server_command();
            assert!(!cmd.contains(&p.password), "{engine:?}: {cmd}");
            assert!(cmd.contains("WHARF_DB_PASSWORD"), "{engine:?}");
            assert!(cmd.contains("127.0.0.1"), "{engine:?}");
            assert!(
                p.server_env()
                    .contains(&(PASSWORD_VAR.into(), p.password.clone()))
            );
        }
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(sh_quote("/a b"), "'/a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
