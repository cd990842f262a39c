//! Versioned schema migrations, tracked in `PRAGMA user_version`. Each step runs in its own
//! transaction; a database newer than this build is refused rather than guessed at.

use rusqlite::Connection;

use crate::error::{Result, StoreError};

pub(crate) const STEPS: &[&str] = &[
    // 1: apps, domains, env, tokens, operations.
    "CREATE TABLE apps (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        kind          TEXT NOT NULL CHECK (kind IN ('process', 'static')),
        availability  TEXT NOT NULL DEFAULT 'enabled'
                      CHECK (availability IN ('enabled', 'not-served', 'disabled')),
        run           TEXT,
        workdir       TEXT,
        root          TEXT,
        replicas      INTEGER NOT NULL DEFAULT 1 CHECK (replicas >= 0),
        memory_bytes  INTEGER,
        cpu_millis    INTEGER,
        max_body      INTEGER,
        health_path   TEXT,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    );
    CREATE TABLE domains (
        app_id  INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        host    TEXT NOT NULL UNIQUE,
        PRIMARY KEY (app_id, host)
    );
    CREATE TABLE env (
        app_id  INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        name    TEXT NOT NULL,
        value   TEXT NOT NULL,
        PRIMARY KEY (app_id, name)
    );
    CREATE TABLE tokens (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        hash        TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE operations (
        id           INTEGER PRIMARY KEY,
        app          TEXT,
        kind         TEXT NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
        message      TEXT NOT NULL DEFAULT '',
        started_at   INTEGER NOT NULL,
        finished_at  INTEGER
    );
    CREATE INDEX operations_app ON operations (app, id);
    CREATE TABLE actions (
        operation_id  INTEGER NOT NULL REFERENCES operations(id) ON DELETE CASCADE,
        seq           INTEGER NOT NULL,
        name          TEXT NOT NULL,
        status        TEXT NOT NULL,
        message       TEXT NOT NULL,
        at            INTEGER NOT NULL,
        PRIMARY KEY (operation_id, seq)
    );",
    // 2: releases (deploys), the active one per app, deploy source and webhook secret.
    "CREATE TABLE releases (
        id            INTEGER PRIMARY KEY,
        app_id        INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
        number        INTEGER NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('building', 'ready', 'failed', 'active')),
        source        TEXT NOT NULL,
        commit_sha    TEXT,
        build         TEXT NOT NULL DEFAULT '',
        run           TEXT,
        static_dir    TEXT,
        health_path   TEXT,
        config        TEXT NOT NULL DEFAULT '{}',
        backup        TEXT,
        backup_sha256 TEXT,
        message       TEXT NOT NULL DEFAULT '',
        created_at    INTEGER NOT NULL,
        UNIQUE (app_id, number)
    );
    ALTER TABLE apps ADD COLUMN release INTEGER;
    ALTER TABLE apps ADD COLUMN keep_releases INTEGER NOT NULL DEFAULT 5;
    ALTER TABLE apps ADD COLUMN git_url TEXT;
    ALTER TABLE apps ADD COLUMN git_ref TEXT;
    ALTER TABLE apps ADD COLUMN webhook_secret TEXT;",
    // 3: env defaults from a release's manifest (JSON object), under the app's own env.
    "ALTER TABLE releases ADD COLUMN env_defaults TEXT NOT NULL DEFAULT '{}';",
    // 4: HTTPS: a certificate source per domain, HSTS per app.
    "ALTER TABLE domains ADD COLUMN tls TEXT NOT NULL DEFAULT 'none'
        CHECK (tls IN ('none', 'acme', 'self-signed', 'manual'));
    ALTER TABLE apps ADD COLUMN hsts_seconds INTEGER;",
    // 5: a release switch in progress (set when a release is activated, cleared once it serves),
    // so a server killed mid-switch puts the previous release back when it starts again.
    "ALTER TABLE apps ADD COLUMN switching INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE apps ADD COLUMN switching_from INTEGER;",
    // 6: the config (env, settings) in force before a rollback began changing it, so a server
    // killed mid-rollback puts it back together with the release.
    "ALTER TABLE apps ADD COLUMN switching_config TEXT;",
    // 7: the sandbox, on unless the app opts out explicitly.
    "ALTER TABLE apps ADD COLUMN sandbox INTEGER NOT NULL DEFAULT 1;",
    // 8: the user id each app runs as. Keyed by name, not by app row: a deleted app's files
    // (volume, logs, code) stay until it is purged, and so does its uid, which an app created
    // again under that name gets back; no other app ever gets it meanwhile.
    "CREATE TABLE app_users (
        app  TEXT PRIMARY KEY,
        uid  INTEGER NOT NULL UNIQUE
    );",
    // 9: containers: the runtime an app runs on, the port it listens on in its container, its
    // read-only root and its Swarm placement constraints (one per line); how long its
    // instances get between SIGTERM and SIGKILL; the image a release runs (built from its
    // Dockerfile or given).
    "ALTER TABLE apps ADD COLUMN runtime TEXT NOT NULL DEFAULT 'process'
        CHECK (runtime IN ('process', 'docker', 'swarm'));
    ALTER TABLE apps ADD COLUMN port INTEGER;
    ALTER TABLE apps ADD COLUMN read_only INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE apps ADD COLUMN constraints TEXT NOT NULL DEFAULT '';
    ALTER TABLE apps ADD COLUMN stop_grace_ms INTEGER;
    ALTER TABLE releases ADD COLUMN image TEXT;",
    // 10: other machines (agents joined by links): each node pins the certificate it enrolled
    // with; join tokens are kept only as hashes and work once; an app may be placed on a node;
    // TCP tunnels carried over the links.
    "CREATE TABLE nodes (
        name        TEXT PRIMARY KEY,
        fingerprint TEXT,
        created_at  INTEGER NOT NULL,
        joined_at   INTEGER
    );
    CREATE TABLE node_tokens (
        hash       TEXT PRIMARY KEY,
        node       TEXT NOT NULL REFERENCES nodes(name) ON DELETE CASCADE,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER
    );
    ALTER TABLE apps ADD COLUMN node TEXT;
    CREATE TABLE tunnels (
        name        TEXT PRIMARY KEY,
        listen_node TEXT NOT NULL,
        listen_addr TEXT NOT NULL,
        to_node     TEXT NOT NULL,
        to_addr     TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );",
    // 11: managed databases (their password is a secret, like env values), backup schedules
    // (a target app or database, a cron expression, a retention template), every backup taken
    // (its snapshot in the repository, whether it was verified, where copies are) and the
    // alerts sent about them. Backups are kept by target name, not row: a deleted app's backups
    // are what brings it back.
    "CREATE TABLE databases (
        name       TEXT PRIMARY KEY,
        engine     TEXT NOT NULL CHECK (engine IN ('postgres', 'mysql', 'redis')),
        port       INTEGER NOT NULL UNIQUE,
        user       TEXT NOT NULL,
        password   TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE backup_schedules (
        name       TEXT PRIMARY KEY,
        target     TEXT NOT NULL,
        cron       TEXT NOT NULL,
        template   TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE backups (
        id          INTEGER PRIMARY KEY,
        target      TEXT NOT NULL,
        schedule    TEXT,
        kind        TEXT NOT NULL CHECK (kind IN ('scheduled', 'manual', 'pre-restore')),
        state       TEXT NOT NULL CHECK (state IN ('running', 'verified', 'failed', 'removed')),
        snapshot    TEXT,
        started_at  INTEGER NOT NULL,
        finished_at INTEGER,
        total_bytes INTEGER,
        added_bytes INTEGER,
        error       TEXT,
        copies      TEXT NOT NULL DEFAULT '',
        note        TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX backups_by_target ON backups (target, started_at);
    CREATE TABLE alerts (
        id         INTEGER PRIMARY KEY,
        at         INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        target     TEXT NOT NULL,
        subject    TEXT NOT NULL,
        deliveries TEXT NOT NULL
    );",
    // 12: the operations log is read in pages, newest first, filtered by kind or status: an
    // index each, so a rare status does not scan the whole log.
    "CREATE INDEX operations_kind ON operations (kind, id);
    CREATE INDEX operations_status ON operations (status, id);",
    // 13: users and roles. Tokens belong to a user; the tokens made so far (the admin token)
    // become the built-in `admin` user's, who holds the global admin role. A grant with
    // app '' is global. Operations name who did them (empty: before users existed).
    "CREATE TABLE users (
        name          TEXT PRIMARY KEY,
        password_hash TEXT,
        created_at    INTEGER NOT NULL
    );
    CREATE TABLE grants (
        user  TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        app   TEXT NOT NULL DEFAULT '',
        role  TEXT NOT NULL CHECK (role IN ('admin', 'deployer', 'viewer')),
        PRIMARY KEY (user, app)
    );
    CREATE INDEX grants_by_app ON grants (app, user);
    -- A deleted app's collaborators go with it: a new app of the same name starts without them.
    CREATE TRIGGER apps_grants_gone AFTER DELETE ON apps
    BEGIN DELETE FROM grants WHERE app = OLD.name; END;
    INSERT INTO users (name, password_hash, created_at) VALUES ('admin', NULL, CAST(strftime('%s', 'now') AS INTEGER));
    INSERT INTO grants (user, app, role) VALUES ('admin', '', 'admin');
    CREATE TABLE tokens_new (
        id           INTEGER PRIMARY KEY,
        user         TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        kind         TEXT NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'session')),
        hash         TEXT NOT NULL UNIQUE,
        created_at   INTEGER NOT NULL,
        last_used_at INTEGER,
        expires_at   INTEGER,
        UNIQUE (user, name)
    );
    INSERT INTO tokens_new (id, user, name, hash, created_at)
        SELECT id, 'admin', name, hash, created_at FROM tokens;
    DROP TABLE tokens;
    ALTER TABLE tokens_new RENAME TO tokens;
    ALTER TABLE operations ADD COLUMN actor TEXT NOT NULL DEFAULT '';",
];

pub(crate) fn run(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = STEPS.len() as i64;
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    for (i, step) in STEPS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
