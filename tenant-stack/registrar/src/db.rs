//! SQLite storage: one owner thread holds the connection (an actor, like `vouch-tpm` does for
//! the TPM); async code sends it closures and awaits their results. Every closure runs alone,
//! so a read-check-write sequence inside one closure is atomic — this replaces upstream's
//! per-agent registration locks.
//!
//! Schema: versioned migrations recorded in `schema_version`; migration 1 creates `agents`.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// Migrations in order; `MIGRATIONS[i]` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the agents table. Keys and certificates are stored in their wire encodings: base64
    // TPM2B_PUBLIC, base64 DER (EK certificate), PEM or "disabled" (mTLS certificate).
    "CREATE TABLE agents (
        agent_id    TEXT PRIMARY KEY NOT NULL,
        ek_tpm      TEXT NOT NULL,
        ekcert      TEXT,
        aik_tpm     TEXT NOT NULL,
        key         TEXT NOT NULL,
        active      INTEGER NOT NULL DEFAULT 0,
        regcount    INTEGER NOT NULL DEFAULT 0,
        ip          TEXT,
        port        INTEGER,
        mtls_cert   TEXT
    ) STRICT",
];

/// Schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// One stored agent (row of `agents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    pub agent_id: String,
    pub ek_tpm: String,
    pub ekcert: Option<String>,
    pub aik_tpm: String,
    /// base64 of the credential secret (upstream's `key`).
    pub key: String,
    pub active: bool,
    pub regcount: u32,
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub mtls_cert: Option<String>,
}

pub use vouch_store::{Db, DbError};

/// Open (creating and migrating) the registrar's database.
pub fn open(path: &Path) -> Result<Db, DbError> {
    Db::open(path, "vouch-registrar-db", MIGRATIONS)
}

const AGENT_COLUMNS: &str =
    "agent_id, ek_tpm, ekcert, aik_tpm, key, active, regcount, ip, port, mtls_cert";

/// The agent's row, if registered.
pub fn get_agent(conn: &Connection, agent_id: &str) -> Result<Option<AgentRow>, DbError> {
    let row = conn
        .query_row(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE agent_id = ?1"),
            [agent_id],
            |r| {
                Ok((
                    AgentRow {
                        agent_id: r.get(0)?,
                        ek_tpm: r.get(1)?,
                        ekcert: r.get(2)?,
                        aik_tpm: r.get(3)?,
                        key: r.get(4)?,
                        active: r.get(5)?,
                        regcount: 0,
                        ip: r.get(7)?,
                        port: None,
                        mtls_cert: r.get(9)?,
                    },
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<i64>>(8)?,
                ))
            },
        )
        .optional()?;
    let Some((mut row, regcount, port)) = row else {
        return Ok(None);
    };
    let corrupt = |column| DbError::Corrupt {
        agent_id: agent_id.to_owned(),
        column,
    };
    row.regcount = u32::try_from(regcount).map_err(|_| corrupt("regcount"))?;
    row.port = port
        .map(u16::try_from)
        .transpose()
        .map_err(|_| corrupt("port"))?;
    Ok(Some(row))
}

/// Insert or replace the agent's row.
pub fn put_agent(conn: &Connection, a: &AgentRow) -> Result<(), DbError> {
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO agents ({AGENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ),
        params![
            a.agent_id,
            a.ek_tpm,
            a.ekcert,
            a.aik_tpm,
            a.key,
            a.active,
            i64::from(a.regcount),
            a.ip,
            a.port.map(i64::from),
            a.mtls_cert
        ],
    )?;
    Ok(())
}

/// Set `active`; false if the agent does not exist.
pub fn set_active(conn: &Connection, agent_id: &str, active: bool) -> Result<bool, DbError> {
    Ok(conn.execute(
        "UPDATE agents SET active = ?2 WHERE agent_id = ?1",
        params![agent_id, active],
    )? == 1)
}

/// Delete the agent; false if it did not exist.
pub fn delete_agent(conn: &Connection, agent_id: &str) -> Result<bool, DbError> {
    Ok(conn.execute("DELETE FROM agents WHERE agent_id = ?1", [agent_id])? == 1)
}

/// Every registered agent id (active or not), sorted.
pub fn list_agent_ids(conn: &Connection) -> Result<Vec<String>, DbError> {
    let mut stmt = conn.prepare("SELECT agent_id FROM agents ORDER BY agent_id")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> AgentRow {
        AgentRow {
            agent_id: id.into(),
            ek_tpm: "EK".into(),
            ekcert: None,
            aik_tpm: "AK".into(),
            key: "K".into(),
            active: false,
            regcount: 1,
            ip: Some("127.0.0.1".into()),
            port: Some(9002),
            mtls_cert: Some("disabled".into()),
        }
    }

    #[tokio::test]
    async fn crud_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/reg.sqlite3");
        let db = open(&path).unwrap();
        db.call(|c| put_agent(c, &row("b"))).await.unwrap();
        db.call(|c| put_agent(c, &row("a"))).await.unwrap();
        assert!(db.call(|c| set_active(c, "a", true)).await.unwrap());
        assert!(!db.call(|c| set_active(c, "zz", true)).await.unwrap());
        assert_eq!(db.call(|c| list_agent_ids(c)).await.unwrap(), ["a", "b"]);
        assert!(db.call(|c| delete_agent(c, "b")).await.unwrap());
        assert!(!db.call(|c| delete_agent(c, "b")).await.unwrap());
        drop(db);

        let db = open(&path).unwrap();
        let a = db.call(|c| get_agent(c, "a")).await.unwrap().unwrap();
        assert_eq!(
            a,
            AgentRow {
                active: true,
                ..row("a")
            }
        );
        assert_eq!(db.call(|c| get_agent(c, "b")).await.unwrap(), None);
        let v = db
            .call(|c| vouch_store::schema_version(c).map_err(DbError::from))
            .await
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg.sqlite3");
        drop(open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.execute("INSERT INTO schema_version (version) VALUES (99)", [])
            .unwrap();
        drop(c);
        let e = open(&path).unwrap_err();
        assert!(matches!(e, DbError::TooNew { found: 99, .. }), "{e}");
    }
}
