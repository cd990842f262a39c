//! Users of the API and dashboard, and their roles: a global role, and roles on single apps
//! (an app's collaborators). Passwords arrive already hashed: the store never sees one.

use std::fmt;
use std::str::FromStr;

use rusqlite::{OptionalExtension, params};

use crate::error::{Result, StoreError, exists_on_conflict};
use crate::{Store, now};

/// What a user may do, each role holding the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads, and changes apps: deploy, env, domains, settings, restart, rollback.
    Deployer,
    /// Everything: users, tokens of others, nodes, databases, backups.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "deployer" => Ok(Role::Deployer),
            "admin" => Ok(Role::Admin),
            _ => Err(format!(
                "`{s}` is not a role; use admin, deployer or viewer"
            )),
        }
    }
}

/// A role, everywhere (`app` is `None`) or on one app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub app: Option<String>,
}

#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    /// Whether the user can log in with a password (otherwise tokens only).
    pub has_password: bool,
    pub created_at: i64,
    pub grants: Vec<Grant>,
}

/// The built-in user the first token belongs to.
pub const ADMIN_USER: &str = "admin";

impl Store {
    pub fn add_user(&self, name: &str, password_hash: Option<&str>) -> Result<()> {
        self.add_user_with_grant(name, password_hash, None)
    }

    /// A new user and, in the same transaction, their role (everywhere, or on one app): a
    /// refused role leaves no user without one behind.
    pub fn add_user_with_grant(
        &self,
        name: &str,
        password_hash: Option<&str>,
        grant: Option<(Role, Option<&str>)>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO users (name, password_hash, created_at) VALUES (?1, ?2, ?3)",
            params![name, password_hash, now()],
        )
        .map_err(|e| exists_on_conflict(e, "user", name))?;
        if let Some((role, app)) = grant {
            grant_in(&tx, name, role, app)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every user with their grants, in name order.
    pub fn users(&self) -> Result<Vec<User>> {
        let conn = self.conn();
        let mut q = conn.prepare_cached(
            "SELECT name, password_hash IS NOT NULL, created_at FROM users ORDER BY name",
        )?;
        let mut users = q
            .query_map([], |r| {
                Ok(User {
                    name: r.get(0)?,
                    has_password: r.get(1)?,
                    created_at: r.get(2)?,
                    grants: Vec::new(),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for u in &mut users {
            u.grants = grants(&conn, &u.name)?;
        }
        Ok(users)
    }

    pub fn user(&self, name: &str) -> Result<User> {
        let conn = self.conn();
        let mut user = conn
            .query_row(
                "SELECT name, password_hash IS NOT NULL, created_at FROM users WHERE name = ?1",
                [name],
                |r| {
                    Ok(User {
                        name: r.get(0)?,
                        has_password: r.get(1)?,
                        created_at: r.get(2)?,
                        grants: Vec::new(),
                    })
                },
            )
            .optional()?
            .ok_or_else(|| not_found(name))?;
        user.grants = grants(&conn, name)?;
        Ok(user)
    }

    /// The user's password hash; `None` when the user is unknown or has no password.
    pub fn password_hash(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT password_hash FROM users WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Sets (or with `None`, removes) the user's password, and ends the sessions the old one
    /// opened (whoever knew it is logged out).
    pub fn set_password(&self, name: &str, hash: Option<&str>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE users SET password_hash = ?2 WHERE name = ?1",
            params![name, hash],
        )?;
        if n == 0 {
            return Err(not_found(name));
        }
        tx.execute(
            "DELETE FROM tokens WHERE user = ?1 AND kind = 'session'",
            [name],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Removes the user with their grants and tokens (refused for the last admin).
    pub fn remove_user(&self, name: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute("DELETE FROM users WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(not_found(name));
        }
        keep_an_admin(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Gives the user `role` everywhere (`app` `None`) or on one app, replacing the role they
    /// had there.
    pub fn grant(&self, user: &str, role: Role, app: Option<&str>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let known: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM users WHERE name = ?1)",
            [user],
            |r| r.get(0),
        )?;
        if !known {
            return Err(not_found(user));
        }
        grant_in(&tx, user, role, app)?;
        tx.commit()?;
        Ok(())
    }

    /// Takes the user's role everywhere (`app` `None`) or on one app away.
    pub fn revoke_grant(&self, user: &str, app: Option<&str>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM grants WHERE user = ?1 AND app = ?2",
            params![user, app.unwrap_or("")],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "role grant",
                name: match app {
                    Some(a) => format!("{user} on {a}"),
                    None => format!("{user} (global)"),
                },
            });
        }
        keep_an_admin(&tx)?;
        tx.commit()?;
        Ok(())
    }
}

/// Checked in the grant's own transaction: an app deleted a moment before would otherwise
/// leave a grant that a later app of the same name inherits.
fn grant_in(
    tx: &rusqlite::Transaction<'_>,
    user: &str,
    role: Role,
    app: Option<&str>,
) -> Result<()> {
    if let Some(app) = app {
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM apps WHERE name = ?1)",
            [app],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(StoreError::NotFound {
                what: "app",
                name: app.to_string(),
            });
        }
    }
    tx.execute(
        "INSERT INTO grants (user, app, role) VALUES (?1, ?2, ?3)
         ON CONFLICT (user, app) DO UPDATE SET role = excluded.role",
        params![user, app.unwrap_or(""), role.as_str()],
    )?;
    keep_an_admin(tx)
}

fn not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        what: "user",
        name: name.to_string(),
    }
}

/// A change that would leave nobody able to manage users is refused (rolled back).
fn keep_an_admin(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let admins: i64 = tx.query_row(
        "SELECT COUNT(*) FROM grants WHERE app = '' AND role = 'admin'",
        [],
        |r| r.get(0),
    )?;
    if admins == 0 {
        return Err(StoreError::LastAdmin);
    }
    Ok(())
}

pub(crate) fn grants(conn: &rusqlite::Connection, user: &str) -> Result<Vec<Grant>> {
    let mut q = conn.prepare_cached("SELECT role, app FROM grants WHERE user = ?1 ORDER BY app")?;
    let rows = q
        .query_map([user], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(role, app)| {
            let role = role.parse().map_err(|e: String| {
                rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
            })?;
            Ok(Grant {
                role,
                app: (!app.is_empty()).then_some(app),
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn grants_replace_per_scope_and_the_last_admin_stays() {
        let s = Store::open_test();
        assert_eq!(
            s.user(ADMIN_USER).unwrap().grants,
            vec![Grant {
                role: Role::Admin,
                app: None
            }],
            "the built-in admin exists from the start"
        );
        s.add_user("ann", Some("$argon2id$x")).unwrap();
        assert!(matches!(
            s.add_user("ann", None),
            Err(StoreError::Exists { .. })
        ));
        // No role on an app that is not there (nor one a later app of its name inherits).
        assert!(matches!(
            s.grant("ann", Role::Deployer, Some("blog")),
            Err(StoreError::NotFound { what: "app", .. })
        ));
        blog(&s);
        s.grant("ann", Role::Viewer, None).unwrap();
        s.grant("ann", Role::Deployer, Some("blog")).unwrap();
        s.grant("ann", Role::Viewer, Some("blog")).unwrap();
        let ann = s.user("ann").unwrap();
        assert!(ann.has_password);
        assert_eq!(ann.grants.len(), 2, "{:?}", ann.grants);
        assert_eq!(ann.grants[1].role, Role::Viewer, "replaced on blog");
        assert!(matches!(
            s.remove_user(ADMIN_USER),
            Err(StoreError::LastAdmin)
        ));
        assert!(matches!(
            s.revoke_grant(ADMIN_USER, None),
            Err(StoreError::LastAdmin)
        ));
        assert!(matches!(
            s.grant(ADMIN_USER, Role::Viewer, None),
            Err(StoreError::LastAdmin)
        ));
        s.grant("ann", Role::Admin, None).unwrap();
        s.remove_user(ADMIN_USER).unwrap();
        assert_eq!(s.users().unwrap().len(), 1);
        s.revoke_grant("ann", Some("blog")).unwrap();
        assert!(s.revoke_grant("ann", Some("blog")).is_err());
    }

    #[test]
    fn a_new_users_refused_role_leaves_no_user_behind() {
        let s = Store::open_test();
        assert!(matches!(
            s.add_user_with_grant("bob", None, Some((Role::Viewer, Some("gone")))),
            Err(StoreError::NotFound { what: "app", .. })
        ));
        assert!(s.user("bob").is_err(), "no user without the role asked for");
        blog(&s);
        s.add_user_with_grant("bob", None, Some((Role::Viewer, Some("blog"))))
            .unwrap();
        assert_eq!(s.user("bob").unwrap().grants.len(), 1);
    }

    pub(crate) fn blog(s: &Store) {
        s.create_app(
            "blog",
            crate::AppKind::Static,
            &crate::AppSettings::default(),
            &[],
            &Default::default(),
        )
        .unwrap();
    }
}
