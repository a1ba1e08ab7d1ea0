//! SQLite storage: one owner thread holds the connection; async code sends it closures and
//! awaits their results, so a read-check-write inside one closure is atomic.
//!
//! The owner thread, `call` and the migration runner are the same as `vouch-registrar`'s
//! `db.rs` (candidates for a shared crate); the schema and queries are the verifier's.
//!
//! Every state change of an agent is a row update, so a restarted verifier resumes each agent
//! where it was. Updates from the poller are conditional on `epoch`: tenant actions
//! (reactivate, stop, delete) bump it, which turns any poll still in flight into a no-op.

use crate::named_policy::PolicyKind;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use vouch_core::api::verifier::OperationalState;

/// Migrations in order; `MIGRATIONS[i]` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: agents. Tenant-supplied fields in their wire encodings (JSON strings, base64
    // TPM2B_PUBLIC, PEM); list fields as JSON arrays. Then the attestation state.
    "CREATE TABLE agents (
        agent_id                    TEXT PRIMARY KEY NOT NULL,
        v                           TEXT,
        ip                          TEXT NOT NULL,
        port                        INTEGER NOT NULL,
        tpm_policy                  TEXT NOT NULL,
        meta_data                   TEXT NOT NULL,
        accept_tpm_hash_algs        TEXT NOT NULL,
        accept_tpm_encryption_algs  TEXT NOT NULL,
        accept_tpm_signing_algs     TEXT NOT NULL,
        ak_tpm                      TEXT NOT NULL,
        mtls_cert                   TEXT,
        supported_version           TEXT,
        revocation_key              TEXT NOT NULL,
        operational_state           INTEGER NOT NULL,
        epoch                       INTEGER NOT NULL DEFAULT 0,
        public_key                  TEXT,
        v_delivered                 INTEGER NOT NULL DEFAULT 0,
        hash_alg                    TEXT NOT NULL DEFAULT '',
        enc_alg                     TEXT NOT NULL DEFAULT '',
        sign_alg                    TEXT NOT NULL DEFAULT '',
        attestation_count           INTEGER NOT NULL DEFAULT 0,
        last_received_quote         INTEGER NOT NULL DEFAULT 0,
        last_successful_attestation INTEGER NOT NULL DEFAULT 0,
        tpm_clock                   INTEGER,
        tpm_reset_count             INTEGER,
        tpm_restart_count           INTEGER,
        retry_count                 INTEGER NOT NULL DEFAULT 0,
        severity_level              INTEGER,
        last_event_id               TEXT,
        failure_reason              TEXT
    ) STRICT",
    // 2: runtime (IMA) policies by name, as upstream's `allowlists` table; each agent's policy
    // name, its tenant keyring (deprecated ima_sign_verification_keys) and its incremental
    // IMA replay state (JSON of `vouch_core::ima::ImaReplayState`).
    "CREATE TABLE runtime_policies (
        name    TEXT PRIMARY KEY NOT NULL,
        policy  TEXT NOT NULL,
        created INTEGER NOT NULL
    ) STRICT;
    ALTER TABLE agents ADD COLUMN runtime_policy_name TEXT;
    ALTER TABLE agents ADD COLUMN ima_sign_verification_keys TEXT NOT NULL DEFAULT '';
    ALTER TABLE agents ADD COLUMN ima_state TEXT;",
    // 3: measured-boot policies (refstates) by name, as upstream's `mbpolicies` table, and
    // each agent's measured-boot policy name (NULL: none, the only value existing agents get).
    "CREATE TABLE mb_policies (
        name    TEXT PRIMARY KEY NOT NULL,
        policy  TEXT NOT NULL,
        created INTEGER NOT NULL
    ) STRICT;
    ALTER TABLE agents ADD COLUMN mb_policy_name TEXT;",
];

/// Schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The TPM clock of the last good quote (`Tpm.check_quote_timing` compares the next one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TpmClock {
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
}

/// One stored agent: what the tenant sent, and where attestation stands.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAgent {
    pub agent_id: String,
    pub v: Option<String>,
    pub ip: String,
    pub port: u16,
    pub tpm_policy: String,
    pub meta_data: String,
    pub accept_tpm_hash_algs: Vec<String>,
    pub accept_tpm_encryption_algs: Vec<String>,
    pub accept_tpm_signing_algs: Vec<String>,
    pub ak_tpm: String,
    pub mtls_cert: Option<String>,
    pub supported_version: Option<String>,
    pub revocation_key: String,

    pub state: OperationalState,
    /// Bumped by tenant actions; poller writes only land when it still matches.
    pub epoch: i64,
    /// The NK PEM of the last good quote with `pubkey` (upstream `public_key`).
    pub public_key: Option<String>,
    pub v_delivered: bool,
    pub hash_alg: String,
    pub enc_alg: String,
    pub sign_alg: String,
    pub attestation_count: u64,
    pub last_received_quote: u64,
    pub last_successful_attestation: u64,
    pub tpm_clock: Option<TpmClock>,
    /// Consecutive failed attempts to reach the agent.
    pub retry_count: u32,
    pub severity_level: Option<u32>,
    pub last_event_id: Option<String>,
    pub failure_reason: Option<String>,
    /// The runtime policy (a row of `runtime_policies`) IMA entries are judged by; `None` =
    /// no runtime policy (PCR 10 is then not in the mask either).
    pub runtime_policy_name: Option<String>,
    /// The tenant's keyring JSON for ima-sig (deprecated upstream field), or "".
    pub ima_sign_verification_keys: String,
    /// JSON of the incremental IMA replay state; `None` = nothing accepted yet.
    pub ima_state: Option<String>,
    /// The measured-boot policy (a row of `mb_policies`) the boot event log is judged by;
    /// `None` = no measured-boot checking.
    pub mb_policy_name: Option<String>,
}

pub use vouch_store::{Db, DbError};

/// Open (creating and migrating) the verifier's database.
pub fn open(path: &Path) -> Result<Db, DbError> {
    Db::open(path, "vouch-verifier-db", MIGRATIONS)
}

const COLUMNS: &str = "agent_id, v, ip, port, tpm_policy, meta_data, accept_tpm_hash_algs, \
    accept_tpm_encryption_algs, accept_tpm_signing_algs, ak_tpm, mtls_cert, supported_version, \
    revocation_key, operational_state, epoch, public_key, v_delivered, hash_alg, enc_alg, \
    sign_alg, attestation_count, last_received_quote, last_successful_attestation, tpm_clock, \
    tpm_reset_count, tpm_restart_count, retry_count, severity_level, last_event_id, failure_reason, \
    runtime_policy_name, ima_sign_verification_keys, ima_state, mb_policy_name";

fn corrupt(agent_id: &str, column: &'static str) -> DbError {
    DbError::Corrupt {
        agent_id: agent_id.to_owned(),
        column,
    }
}

fn from_row(r: &Row<'_>) -> Result<StoredAgent, DbError> {
    let agent_id: String = r.get(0)?;
    let list = |i: usize, column: &'static str| -> Result<Vec<String>, DbError> {
        let text: String = r.get(i)?;
        serde_json::from_str(&text).map_err(|_| corrupt(&agent_id, column))
    };
    let state: u8 = r.get(13)?;
    let clock: Option<i64> = r.get(23)?;
    let reset: Option<u32> = r.get(24)?;
    let restart: Option<u32> = r.get(25)?;
    let to_u64 = |v: i64, column| u64::try_from(v).map_err(|_| corrupt(&agent_id, column));
    let tpm_clock = match (clock, reset, restart) {
        (Some(c), Some(reset_count), Some(restart_count)) => Some(TpmClock {
            clock: to_u64(c, "tpm_clock")?,
            reset_count,
            restart_count,
        }),
        _ => None,
    };
    Ok(StoredAgent {
        v: r.get(1)?,
        ip: r.get(2)?,
        port: r.get(3)?,
        tpm_policy: r.get(4)?,
        meta_data: r.get(5)?,
        accept_tpm_hash_algs: list(6, "accept_tpm_hash_algs")?,
        accept_tpm_encryption_algs: list(7, "accept_tpm_encryption_algs")?,
        accept_tpm_signing_algs: list(8, "accept_tpm_signing_algs")?,
        ak_tpm: r.get(9)?,
        mtls_cert: r.get(10)?,
        supported_version: r.get(11)?,
        revocation_key: r.get(12)?,
        state: OperationalState::from_code(state)
            .ok_or_else(|| corrupt(&agent_id, "operational_state"))?,
        epoch: r.get(14)?,
        public_key: r.get(15)?,
        v_delivered: r.get(16)?,
        hash_alg: r.get(17)?,
        enc_alg: r.get(18)?,
        sign_alg: r.get(19)?,
        attestation_count: to_u64(r.get(20)?, "attestation_count")?,
        last_received_quote: to_u64(r.get(21)?, "last_received_quote")?,
        last_successful_attestation: to_u64(r.get(22)?, "last_successful_attestation")?,
        tpm_clock,
        retry_count: r.get(26)?,
        severity_level: r.get(27)?,
        last_event_id: r.get(28)?,
        failure_reason: r.get(29)?,
        runtime_policy_name: r.get(30)?,
        ima_sign_verification_keys: r.get(31)?,
        ima_state: r.get(32)?,
        mb_policy_name: r.get(33)?,
        agent_id,
    })
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn json_list(v: &[String]) -> String {
    serde_json::Value::from(v.to_vec()).to_string()
}

/// Insert a new agent. `false` (nothing written) if the id exists.
pub fn insert_agent(conn: &Connection, a: &StoredAgent) -> Result<bool, DbError> {
    let n = conn.execute(
        &format!(
            "INSERT OR IGNORE INTO agents ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
             ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, \
             ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34)"
        ),
        params![
            a.agent_id,
            a.v,
            a.ip,
            a.port,
            a.tpm_policy,
            a.meta_data,
            json_list(&a.accept_tpm_hash_algs),
            json_list(&a.accept_tpm_encryption_algs),
            json_list(&a.accept_tpm_signing_algs),
            a.ak_tpm,
            a.mtls_cert,
            a.supported_version,
            a.revocation_key,
            a.state.code(),
            a.epoch,
            a.public_key,
            a.v_delivered,
            a.hash_alg,
            a.enc_alg,
            a.sign_alg,
            i64_of(a.attestation_count),
            i64_of(a.last_received_quote),
            i64_of(a.last_successful_attestation),
            a.tpm_clock.map(|c| i64_of(c.clock)),
            a.tpm_clock.map(|c| c.reset_count),
            a.tpm_clock.map(|c| c.restart_count),
            a.retry_count,
            a.severity_level,
            a.last_event_id,
            a.failure_reason,
            a.runtime_policy_name,
            a.ima_sign_verification_keys,
            a.ima_state,
            a.mb_policy_name,
        ],
    )?;
    Ok(n == 1)
}

/// Write the attestation state of `a` if its `epoch` is still current. `false`: the agent was
/// deleted or a tenant action superseded this update (nothing written).
pub fn save_progress(conn: &Connection, a: &StoredAgent) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE agents SET operational_state = ?3, public_key = ?4, v_delivered = ?5,
            hash_alg = ?6, enc_alg = ?7, sign_alg = ?8, attestation_count = ?9,
            last_received_quote = ?10, last_successful_attestation = ?11, tpm_clock = ?12,
            tpm_reset_count = ?13, tpm_restart_count = ?14, retry_count = ?15,
            severity_level = ?16, last_event_id = ?17, failure_reason = ?18,
            supported_version = ?19, ima_state = ?20
         WHERE agent_id = ?1 AND epoch = ?2",
        params![
            a.agent_id,
            a.epoch,
            a.state.code(),
            a.public_key,
            a.v_delivered,
            a.hash_alg,
            a.enc_alg,
            a.sign_alg,
            i64_of(a.attestation_count),
            i64_of(a.last_received_quote),
            i64_of(a.last_successful_attestation),
            a.tpm_clock.map(|c| i64_of(c.clock)),
            a.tpm_clock.map(|c| c.reset_count),
            a.tpm_clock.map(|c| c.restart_count),
            a.retry_count,
            a.severity_level,
            a.last_event_id,
            a.failure_reason,
            a.supported_version,
            a.ima_state,
        ],
    )?;
    Ok(n == 1)
}

/// A tenant action: set `state`, bump `epoch`, reset retries; `clear_failure` (reactivate) also
/// forgets the last failure and the IMA replay state, so the next quote replays the IMA log
/// from entry 0 against the current runtime policy. Returns the updated agent, `None` if
/// unknown.
pub fn set_state_by_tenant(
    conn: &Connection,
    agent_id: &str,
    state: OperationalState,
    clear_failure: bool,
) -> Result<Option<StoredAgent>, DbError> {
    let clear = if clear_failure {
        ", severity_level = NULL, last_event_id = NULL, failure_reason = NULL, ima_state = NULL"
    } else {
        ""
    };
    let n = conn.execute(
        &format!(
            "UPDATE agents SET operational_state = ?2, epoch = epoch + 1, retry_count = 0{clear}
             WHERE agent_id = ?1"
        ),
        params![agent_id, state.code()],
    )?;
    if n == 0 {
        return Ok(None);
    }
    get_agent(conn, agent_id)
}

pub fn get_agent(conn: &Connection, agent_id: &str) -> Result<Option<StoredAgent>, DbError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM agents WHERE agent_id = ?1"))?;
    let mut rows = stmt.query([agent_id])?;
    match rows.next()? {
        Some(r) => Ok(Some(from_row(r)?)),
        None => Ok(None),
    }
}

/// Store policy `name` of `kind`; `false` (nothing written) if the name exists.
pub fn insert_policy(
    conn: &Connection,
    kind: PolicyKind,
    name: &str,
    policy: &str,
) -> Result<bool, DbError> {
    let now = i64_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    let n = conn.execute(
        &format!(
            "INSERT OR IGNORE INTO {} (name, policy, created) VALUES (?1, ?2, ?3)",
            kind.table()
        ),
        params![name, policy, now],
    )?;
    Ok(n == 1)
}

/// Replace policy `name` of `kind`; `false` if there is none of that name.
pub fn update_policy(
    conn: &Connection,
    kind: PolicyKind,
    name: &str,
    policy: &str,
) -> Result<bool, DbError> {
    let n = conn.execute(
        &format!("UPDATE {} SET policy = ?2 WHERE name = ?1", kind.table()),
        params![name, policy],
    )?;
    Ok(n == 1)
}

pub fn get_policy(
    conn: &Connection,
    kind: PolicyKind,
    name: &str,
) -> Result<Option<String>, DbError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT policy FROM {} WHERE name = ?1",
        kind.table()
    ))?;
    let mut rows = stmt.query([name])?;
    match rows.next()? {
        Some(r) => Ok(Some(r.get(0)?)),
        None => Ok(None),
    }
}

pub fn list_policies(conn: &Connection, kind: PolicyKind) -> Result<Vec<String>, DbError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT name FROM {} ORDER BY name", kind.table()))?;
    let names = stmt.query_map([], |r| r.get(0))?;
    Ok(names.collect::<Result<Vec<String>, _>>()?)
}

/// What deleting a policy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDelete {
    Deleted,
    NotFound,
    /// An agent still uses it (upstream answers 409).
    InUse(String),
}

pub fn delete_policy(
    conn: &Connection,
    kind: PolicyKind,
    name: &str,
) -> Result<PolicyDelete, DbError> {
    let user: Option<String> = conn
        .query_row(
            &format!(
                "SELECT agent_id FROM agents WHERE {} = ?1 LIMIT 1",
                kind.agent_column()
            ),
            [name],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(agent) = user {
        return Ok(PolicyDelete::InUse(agent));
    }
    let n = conn.execute(
        &format!("DELETE FROM {} WHERE name = ?1", kind.table()),
        [name],
    )?;
    Ok(if n == 1 {
        PolicyDelete::Deleted
    } else {
        PolicyDelete::NotFound
    })
}

/// Every agent, ordered by id.
pub fn list_agents(conn: &Connection) -> Result<Vec<StoredAgent>, DbError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM agents ORDER BY agent_id"))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(from_row(r)?);
    }
    Ok(out)
}

pub fn list_agent_ids(conn: &Connection) -> Result<Vec<String>, DbError> {
    let mut stmt = conn.prepare_cached("SELECT agent_id FROM agents ORDER BY agent_id")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// Delete; `false` if unknown.
pub fn delete_agent(conn: &Connection, agent_id: &str) -> Result<bool, DbError> {
    Ok(conn.execute("DELETE FROM agents WHERE agent_id = ?1", [agent_id])? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(id: &str) -> StoredAgent {
        StoredAgent {
            agent_id: id.into(),
            v: Some("dg==".into()),
            ip: "127.0.0.1".into(),
            port: 9002,
            tpm_policy: "{\"mask\": \"0x0\"}".into(),
            meta_data: "{}".into(),
            accept_tpm_hash_algs: vec!["sha256".into()],
            accept_tpm_encryption_algs: vec!["rsa".into()],
            accept_tpm_signing_algs: vec!["rsassa".into()],
            ak_tpm: "AAAA".into(),
            mtls_cert: Some("disabled".into()),
            supported_version: Some("2.5".into()),
            revocation_key: String::new(),
            state: OperationalState::Start,
            epoch: 0,
            public_key: None,
            v_delivered: false,
            hash_alg: String::new(),
            enc_alg: String::new(),
            sign_alg: String::new(),
            attestation_count: 0,
            last_received_quote: 0,
            last_successful_attestation: 0,
            tpm_clock: None,
            retry_count: 0,
            severity_level: None,
            last_event_id: None,
            failure_reason: None,
            runtime_policy_name: None,
            ima_sign_verification_keys: String::new(),
            ima_state: None,
            mb_policy_name: None,
        }
    }

    #[tokio::test]
    async fn roundtrip_epoch_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sqlite3");
        let db = open(&path).unwrap();
        let a = sample("a");
        let b = a.clone();
        assert!(db.call(move |c| insert_agent(c, &b)).await.unwrap());
        let b = a.clone();
        assert!(!db.call(move |c| insert_agent(c, &b)).await.unwrap());

        let mut progressed = a.clone();
        progressed.state = OperationalState::GetQuote;
        progressed.tpm_clock = Some(TpmClock {
            clock: 7,
            reset_count: 1,
            restart_count: 2,
        });
        progressed.attestation_count = 3;
        let p = progressed.clone();
        assert!(db.call(move |c| save_progress(c, &p)).await.unwrap());

        // A tenant action bumps the epoch: the stale update is dropped.
        let stopped = db
            .call(|c| set_state_by_tenant(c, "a", OperationalState::TenantFailed, false))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stopped.epoch, 1);
        let p = progressed.clone();
        assert!(!db.call(move |c| save_progress(c, &p)).await.unwrap());
        drop(db);

        let db = open(&path).unwrap();
        let got = db.call(|c| get_agent(c, "a")).await.unwrap().unwrap();
        assert_eq!(got.state, OperationalState::TenantFailed);
        assert_eq!(got.attestation_count, 3);
        assert_eq!(got.tpm_clock.unwrap().restart_count, 2);
        assert_eq!(
            db.call(|c| list_agent_ids(c)).await.unwrap(),
            vec!["a".to_string()]
        );
        assert!(db.call(|c| delete_agent(c, "a")).await.unwrap());
        assert!(db.call(|c| get_agent(c, "a")).await.unwrap().is_none());
    }

    /// A database written by the previous release (schema 2, an agent with a runtime policy)
    /// opens under schema 3: the agent and its policy are intact, it has no measured-boot
    /// policy, and measured-boot policies can be stored and referenced.
    #[tokio::test]
    async fn schema_2_databases_migrate_to_measured_boot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sqlite3");
        let old = Db::open(&path, "old", &MIGRATIONS[..2]).unwrap();
        old.call(|c| {
            c.execute_batch(
                "INSERT INTO runtime_policies (name, policy, created) VALUES ('rp', '{}', 1);
                 INSERT INTO agents (agent_id, ip, port, tpm_policy, meta_data,
                     accept_tpm_hash_algs, accept_tpm_encryption_algs, accept_tpm_signing_algs,
                     ak_tpm, revocation_key, operational_state, attestation_count,
                     runtime_policy_name, ima_state)
                 VALUES ('old-agent', '127.0.0.1', 9002, '{\"mask\": \"0x400\"}', '{}',
                     '[\"sha256\"]', '[\"rsa\"]', '[\"rsassa\"]', 'AAAA', '', 3, 42,
                     'rp', '{}');",
            )
            .map_err(DbError::from)
        })
        .await
        .unwrap();
        drop(old);

        let db = open(&path).unwrap();
        let got = db
            .call(|c| get_agent(c, "old-agent"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.state, OperationalState::GetQuote);
        assert_eq!(got.attestation_count, 42);
        assert_eq!(got.runtime_policy_name.as_deref(), Some("rp"));
        assert_eq!(got.ima_state.as_deref(), Some("{}"));
        assert_eq!(got.mb_policy_name, None);
        let version = db
            .call(|c| vouch_store::schema_version(c).map_err(DbError::from))
            .await
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(
            db.call(|c| get_policy(c, PolicyKind::Runtime, "rp"))
                .await
                .unwrap()
                .as_deref(),
            Some("{}")
        );
        assert!(db
            .call(|c| list_policies(c, PolicyKind::MeasuredBoot))
            .await
            .unwrap()
            .is_empty());

        // The new table and column work: a policy in use cannot be deleted.
        assert!(db
            .call(|c| insert_policy(c, PolicyKind::MeasuredBoot, "mb", "{}"))
            .await
            .unwrap());
        let mut a = sample("new-agent");
        a.mb_policy_name = Some("mb".into());
        assert!(db.call(move |c| insert_agent(c, &a)).await.unwrap());
        assert_eq!(
            db.call(|c| delete_policy(c, PolicyKind::MeasuredBoot, "mb"))
                .await
                .unwrap(),
            PolicyDelete::InUse("new-agent".into())
        );
        assert_eq!(
            db.call(|c| get_agent(c, "new-agent"))
                .await
                .unwrap()
                .unwrap()
                .mb_policy_name
                .as_deref(),
            Some("mb")
        );
    }
}
