//! What the two named-policy stores have in common: runtime (IMA) policies behind upstream's
//! `/allowlists/{name}` and measured-boot policies (refstates) behind `/mbpolicies/{name}`.
//!
//! Both follow the same rules upstream (`cloud_verifier_tornado.py:AgentsHandler.post`):
//! a policy has a unique name, an agent refers to one by name, a policy in use cannot be
//! deleted, and the add body picks the agent's policy in one of four ways ([`PolicyChoice`]).
//! Only the refusal wording differs between the stores; it is upstream's, kept here.

use crate::db::{self, DbError, StoredAgent};
use axum::http::StatusCode;
use rusqlite::Connection;

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Runtime (IMA) policies, upstream's `allowlists` table.
    Runtime,
    /// Measured-boot refstates, upstream's `mbpolicies` table.
    MeasuredBoot,
}

impl PolicyKind {
    /// The table holding the policies (`name`, `policy`, `created`).
    pub(crate) fn table(self) -> &'static str {
        match self {
            PolicyKind::Runtime => "runtime_policies",
            PolicyKind::MeasuredBoot => "mb_policies",
        }
    }

    /// The `agents` column naming an agent's policy of this kind.
    pub(crate) fn agent_column(self) -> &'static str {
        match self {
            PolicyKind::Runtime => "runtime_policy_name",
            PolicyKind::MeasuredBoot => "mb_policy_name",
        }
    }

    /// The key of the list body (`GET /allowlists/`, `GET /mbpolicies/`), as upstream.
    pub fn list_key(self) -> &'static str {
        match self {
            PolicyKind::Runtime => "runtimepolicy names",
            PolicyKind::MeasuredBoot => "mbpolicy names",
        }
    }

    /// For logs.
    pub fn noun(self) -> &'static str {
        match self {
            PolicyKind::Runtime => "runtime policy",
            PolicyKind::MeasuredBoot => "measured boot policy",
        }
    }
}

/// Why a request about a named policy was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRefusal {
    /// Add body with a policy whose name (given, or the agent's id) is taken.
    ExistsOnAdd { by_agent_id: bool },
    /// Add body naming a policy that is not stored.
    MissingOnAdd,
    /// POST of a name that is taken.
    ExistsOnCreate,
    /// PUT of a name that is not stored.
    MissingOnUpdate,
    /// GET or DELETE of a name that is not stored.
    NotFound,
    /// DELETE of a policy an agent still uses.
    InUse { agent: String },
}

impl PolicyRefusal {
    /// Upstream's status (`cloud_verifier_tornado.py`): note that upstream answers a PUT of
    /// an unknown measured-boot policy with 409, and of an unknown runtime policy with 404.
    pub fn status(&self, kind: PolicyKind) -> StatusCode {
        match self {
            PolicyRefusal::ExistsOnAdd { .. }
            | PolicyRefusal::ExistsOnCreate
            | PolicyRefusal::InUse { .. } => StatusCode::CONFLICT,
            PolicyRefusal::MissingOnUpdate if kind == PolicyKind::MeasuredBoot => {
                StatusCode::CONFLICT
            }
            PolicyRefusal::MissingOnAdd
            | PolicyRefusal::MissingOnUpdate
            | PolicyRefusal::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// Upstream's message for this store and case.
    pub fn message(&self, kind: PolicyKind, name: &str) -> String {
        use PolicyKind::{MeasuredBoot as Mb, Runtime as Rt};
        use PolicyRefusal as R;
        match (kind, self) {
            (Rt, R::ExistsOnAdd { .. } | R::ExistsOnCreate) => format!(
                "IMA policy with name {name} already exists. Please use a different name or \
                 delete the allowlist from the verifier."
            ),
            (Rt, R::MissingOnAdd | R::MissingOnUpdate | R::NotFound) => {
                format!("Could not find IMA policy with name {name}!")
            }
            (Rt, R::InUse { agent }) => {
                format!("Can't delete allowlist as it's currently in use by agent {agent}")
            }
            (Mb, R::ExistsOnAdd { by_agent_id: false }) => format!(
                "mb_policy with name {name} already exists. Please use a different name or \
                 delete the mb_policy from the verifier."
            ),
            (Mb, R::ExistsOnAdd { by_agent_id: true }) => format!(
                "mb_policy with name {name} already exists. You can delete the mb_policy from \
                 the verifier."
            ),
            (Mb, R::MissingOnAdd) => format!("Could not find mb_policy with name {name}!"),
            (Mb, R::ExistsOnCreate) => {
                format!("Measured boot policy with name {name} already exists")
            }
            (Mb, R::MissingOnUpdate) => {
                format!("Measured boot policy with name {name} does not already exist")
            }
            (Mb, R::NotFound) => format!("Measured boot policy {name} not found"),
            (Mb, R::InUse { agent }) => {
                format!("Can't delete mb_policy as it's currently in use by agent {agent}")
            }
        }
    }
}

/// A policy name: what upstream's URLs and the tenant accept.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "policy name {name:?} must be 1-255 characters of A-Z a-z 0-9 - _ ."
        ))
    }
}

/// Which policy of one kind an added agent gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyChoice {
    None,
    Existing(String),
    New { name: String, json: String },
}

impl PolicyChoice {
    /// Upstream's four cases: no name, no policy → none; name only → the stored one; policy
    /// without a name → stored under the agent's id; both → stored under the name. `name`
    /// must have passed [`check_name`] (or be empty), `policy` must be validated.
    pub fn from_body(agent_id: &str, name: &str, policy: Option<String>) -> Self {
        match (name.is_empty(), policy) {
            (true, None) => PolicyChoice::None,
            (false, None) => PolicyChoice::Existing(name.to_owned()),
            (true, Some(json)) => PolicyChoice::New {
                name: agent_id.to_owned(),
                json,
            },
            (false, Some(json)) => PolicyChoice::New {
                name: name.to_owned(),
                json,
            },
        }
    }

    /// The name the agent row records.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::None => None,
            Self::Existing(n) | Self::New { name: n, .. } => Some(n),
        }
    }
}

/// Outcome of storing an agent with its policy choices (one transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    AgentExists,
    PolicyExists(PolicyKind, String),
    PolicyMissing(PolicyKind, String),
}

/// Insert `agent` and, where new, its runtime and measured-boot policies, atomically: a
/// refusal leaves no policy behind.
pub fn insert_with_policies(
    conn: &mut Connection,
    agent: &StoredAgent,
    choices: &[(PolicyKind, &PolicyChoice)],
) -> Result<AddOutcome, DbError> {
    let tx = conn.transaction()?;
    for &(kind, choice) in choices {
        match choice {
            PolicyChoice::None => {}
            PolicyChoice::Existing(name) => {
                if db::get_policy(&tx, kind, name)?.is_none() {
                    return Ok(AddOutcome::PolicyMissing(kind, name.clone()));
                }
            }
            PolicyChoice::New { name, json } => {
                if !db::insert_policy(&tx, kind, name, json)? {
                    return Ok(AddOutcome::PolicyExists(kind, name.clone()));
                }
            }
        }
    }
    if !db::insert_agent(&tx, agent)? {
        return Ok(AddOutcome::AgentExists);
    }
    tx.commit()?;
    Ok(AddOutcome::Added)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn four_cases_as_upstream() {
        let p = || Some("{}".to_string());
        assert_eq!(PolicyChoice::from_body("a", "", None), PolicyChoice::None);
        assert_eq!(
            PolicyChoice::from_body("a", "n", None),
            PolicyChoice::Existing("n".into())
        );
        assert_eq!(
            PolicyChoice::from_body("a", "", p()).name(),
            Some("a"),
            "a nameless policy is stored under the agent's id"
        );
        assert_eq!(PolicyChoice::from_body("a", "n", p()).name(), Some("n"));
    }

    #[test]
    fn wording_and_status_per_store() {
        let put = PolicyRefusal::MissingOnUpdate;
        assert_eq!(put.status(PolicyKind::Runtime), StatusCode::NOT_FOUND);
        assert_eq!(put.status(PolicyKind::MeasuredBoot), StatusCode::CONFLICT);
        assert_eq!(
            PolicyRefusal::NotFound.message(PolicyKind::MeasuredBoot, "p"),
            "Measured boot policy p not found"
        );
        assert!(PolicyRefusal::ExistsOnCreate
            .message(PolicyKind::Runtime, "p")
            .starts_with("IMA policy with name p already exists"));
        assert!(check_name("a/b").is_err());
        assert!(check_name("ok-1.2_3").is_ok());
    }
}
