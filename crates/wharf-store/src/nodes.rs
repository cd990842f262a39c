//! Nodes (machines running `wharf agent`), their one-time join tokens (hashes only) and the TCP
//! tunnels carried over their links.

use rusqlite::{OptionalExtension, params};

use crate::error::{Result, StoreError, exists_on_conflict};
use crate::{Store, now};

/// A node as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// The certificate it enrolled with (hex SHA-256); `None` until it joined.
    pub fingerprint: Option<String>,
    pub created_at: i64,
    pub joined_at: Option<i64>,
}

/// Why a join token was refused: said to the agent as is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the token is not known (check it, or make a new one with `wharf nodes add`)")]
    Unknown,
    #[error("the token was already used (make a new one with `wharf nodes add`)")]
    Used,
    #[error("the token expired (make a new one with `wharf nodes add`)")]
    Expired,
}

/// A TCP tunnel: connections to `listen_addr` on `listen_node` reach `to_addr` on `to_node`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunnel {
    pub name: String,
    pub listen_node: String,
    pub listen_addr: String,
    pub to_node: String,
    pub to_addr: String,
    pub created_at: i64,
}

fn node_not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        what: "node",
        name: name.to_string(),
    }
}

impl Store {
    /// Records a join token for `node` (created if new). A node that already joined gets no
    /// new token: it has its identity; remove it to join that machine again.
    pub fn add_node_token(&self, node: &str, token_hash: &str, expires_at: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let joined: Option<Option<i64>> = tx
            .query_row("SELECT joined_at FROM nodes WHERE name = ?1", [node], |r| {
                r.get(0)
            })
            .optional()?;
        match joined {
            Some(Some(_)) => {
                return Err(StoreError::Exists {
                    what: "node",
                    name: node.to_string(),
                });
            }
            Some(None) => {}
            None => {
                tx.execute(
                    "INSERT INTO nodes (name, created_at) VALUES (?1, ?2)",
                    params![node, now()],
                )?;
            }
        }
        tx.execute(
            "INSERT INTO node_tokens (hash, node, expires_at) VALUES (?1, ?2, ?3)",
            params![token_hash, node, expires_at],
        )
        .map_err(|e| exists_on_conflict(e, "token", node))?;
        tx.commit()?;
        Ok(())
    }

    /// Uses a join token, once: the node it was made for, or why not. Marked used in the same
    /// transaction, so two agents racing with one token cannot both get it.
    pub fn redeem_node_token(&self, token_hash: &str) -> Result<Result<String, TokenRefusal>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let row: Option<(String, i64, Option<i64>)> = tx
            .query_row(
                "SELECT node, expires_at, used_at FROM node_tokens WHERE hash = ?1",
                [token_hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let verdict = match row {
            None => Err(TokenRefusal::Unknown),
            Some((_, _, Some(_))) => Err(TokenRefusal::Used),
            Some((_, expires, None)) if expires <= now() => Err(TokenRefusal::Expired),
            Some((node, _, None)) => {
                tx.execute(
                    "UPDATE node_tokens SET used_at = ?1 WHERE hash = ?2",
                    params![now(), token_hash],
                )?;
                Ok(node)
            }
        };
        tx.commit()?;
        Ok(verdict)
    }

    /// Pins the certificate a node enrolled with; its unused tokens are void from then on (the
    /// used one is kept, so trying it again is told "already used").
    pub fn node_joined(&self, node: &str, fingerprint: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE nodes SET fingerprint = ?1, joined_at = ?2 WHERE name = ?3",
            params![fingerprint, now(), node],
        )?;
        if n == 0 {
            return Err(node_not_found(node));
        }
        tx.execute(
            "DELETE FROM node_tokens WHERE node = ?1 AND used_at IS NULL",
            [node],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn node(&self, name: &str) -> Result<Node> {
        self.conn()
            .query_row(
                "SELECT name, fingerprint, created_at, joined_at FROM nodes WHERE name = ?1",
                [name],
                |r| {
                    Ok(Node {
                        name: r.get(0)?,
                        fingerprint: r.get(1)?,
                        created_at: r.get(2)?,
                        joined_at: r.get(3)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| node_not_found(name))
    }

    pub fn nodes(&self) -> Result<Vec<Node>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, fingerprint, created_at, joined_at FROM nodes ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(Node {
                name: r.get(0)?,
                fingerprint: r.get(1)?,
                created_at: r.get(2)?,
                joined_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets a node (its certificate is refused from then on) and its tokens.
    /// Forgets a node no app is placed on and no tunnel uses; checked in the same transaction,
    /// so an app placed on it meanwhile cannot be left on a node that is gone.
    pub fn remove_node(&self, name: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let names = |sql: &str| -> Result<Vec<String>> {
            let mut q = tx.prepare_cached(sql)?;
            let rows = q.query_map([name], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        };
        let apps = names("SELECT name FROM apps WHERE node = ?1 ORDER BY name")?;
        let tunnels =
            names("SELECT name FROM tunnels WHERE listen_node = ?1 OR to_node = ?1 ORDER BY name")?;
        if !apps.is_empty() || !tunnels.is_empty() {
            return Err(StoreError::NodeInUse {
                node: name.to_string(),
                apps,
                tunnels,
            });
        }
        let n = tx.execute("DELETE FROM nodes WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(node_not_found(name));
        }
        tx.commit()?;
        Ok(())
    }

    pub fn add_tunnel(&self, t: &Tunnel) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO tunnels (name, listen_node, listen_addr, to_node, to_addr, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    t.name,
                    t.listen_node,
                    t.listen_addr,
                    t.to_node,
                    t.to_addr,
                    now()
                ],
            )
            .map_err(|e| exists_on_conflict(e, "tunnel", &t.name))?;
        Ok(())
    }

    pub fn tunnels(&self) -> Result<Vec<Tunnel>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, listen_node, listen_addr, to_node, to_addr, created_at
             FROM tunnels ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Tunnel {
                name: r.get(0)?,
                listen_node: r.get(1)?,
                listen_addr: r.get(2)?,
                to_node: r.get(3)?,
                to_addr: r.get(4)?,
                created_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn remove_tunnel(&self, name: &str) -> Result<()> {
        let n = self
            .conn()
            .execute("DELETE FROM tunnels WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "tunnel",
                name: name.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_once_and_not_after_it_expired() {
        let s = Store::open_test();
        s.add_node_token("edge", "h1", now() + 600).unwrap();
        s.add_node_token("edge", "h2", now() - 1).unwrap();
        assert_eq!(s.redeem_node_token("h1").unwrap(), Ok("edge".to_string()));
        assert_eq!(s.redeem_node_token("h1").unwrap(), Err(TokenRefusal::Used));
        assert_eq!(
            s.redeem_node_token("h2").unwrap(),
            Err(TokenRefusal::Expired)
        );
        assert_eq!(
            s.redeem_node_token("nope").unwrap(),
            Err(TokenRefusal::Unknown)
        );
        s.node_joined("edge", "fp").unwrap();
        assert_eq!(s.node("edge").unwrap().fingerprint.as_deref(), Some("fp"));
        // A joined node gets no new token, and its old ones are void.
        assert!(matches!(
            s.add_node_token("edge", "h3", now() + 600),
            Err(StoreError::Exists { .. })
        ));
        assert_eq!(
            s.redeem_node_token("h2").unwrap(),
            Err(TokenRefusal::Unknown)
        );
        assert_eq!(s.redeem_node_token("h1").unwrap(), Err(TokenRefusal::Used));
        s.remove_node("edge").unwrap();
        assert!(s.nodes().unwrap().is_empty());
    }

    #[test]
    fn a_node_with_an_app_on_it_stays() {
        let s = Store::open_test();
        s.add_node_token("edge", "h1", now() + 600).unwrap();
        crate::accounts::tests::blog(&s);
        let on_edge = crate::AppSettings {
            node: Some(Some("edge".into())),
            ..Default::default()
        };
        s.update_app("blog", &on_edge).unwrap();
        match s.remove_node("edge") {
            Err(StoreError::NodeInUse { apps, .. }) => assert_eq!(apps, ["blog"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.nodes().unwrap().len(), 1, "still there");
    }
}
