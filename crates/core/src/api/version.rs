//! keylime REST API versions: the `major.minor` type, what each side advertises, negotiation,
//! URL path segments (`/v2.6/...`) and the `/version` response bodies.
//!
//! Reference: `docs/keylime-wire.md` §1 (upstream `api_version.py`, `rk:keylime-agent/src/api.rs`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An API version `major.minor`, ordered numerically (`2.10 > 2.9`, as `packaging.version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u16,
    pub minor: u16,
}

impl ApiVersion {
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }

    /// Resolve a URL path segment (`"v2.6"`, `"v2"`) against the versions a server serves.
    /// A bare major maps to the newest served minor of that major (`api_version.py:normalize_version`).
    /// Returns `None` for anything not served (upstream answers 404).
    pub fn from_url_segment(segment: &str, served: &[ApiVersion]) -> Option<ApiVersion> {
        let s = segment.strip_prefix('v')?;
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let major: u16 = s.parse().ok()?;
            return served.iter().copied().filter(|v| v.major == major).max();
        }
        let v: ApiVersion = s.parse().ok()?;
        served.contains(&v).then_some(v)
    }

    /// The URL prefix for this version: `/v2.6`.
    pub fn url_prefix(&self) -> String {
        format!("/v{self}")
    }
}

/// Highest version both sides support (`api_version.py:negotiate_version`).
pub fn negotiate(ours: &[ApiVersion], theirs: &[ApiVersion]) -> Option<ApiVersion> {
    ours.iter().copied().filter(|v| theirs.contains(v)).max()
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Error parsing an API version string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid API version {0:?}: expected \"<major>.<minor>\", e.g. \"2.6\"")]
pub struct ParseVersionError(pub String);

impl FromStr for ApiVersion {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseVersionError(s.to_string());
        let (maj, min) = s.split_once('.').ok_or_else(err)?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(maj) || !digits(min) {
            return Err(err());
        }
        Ok(Self {
            major: maj.parse().map_err(|_| err())?,
            minor: min.parse().map_err(|_| err())?,
        })
    }
}

impl Serialize for ApiVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ApiVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Upstream keylime 7.14.3 `CURRENT_VERSION` (registrar and verifier).
pub const SERVER_CURRENT_VERSION: ApiVersion = ApiVersion::new(2, 6);

/// Upstream keylime 7.14.3 `VERSIONS`: what registrar and verifier advertise in `/version`.
pub const SERVER_ADVERTISED_VERSIONS: [ApiVersion; 9] = [
    ApiVersion::new(1, 0),
    ApiVersion::new(2, 0),
    ApiVersion::new(2, 1),
    ApiVersion::new(2, 2),
    ApiVersion::new(2, 3),
    ApiVersion::new(2, 4),
    ApiVersion::new(2, 5),
    ApiVersion::new(2, 6),
    ApiVersion::new(3, 0),
];

/// The 2.x versions whose URL scopes a Vouch server mounts (`/v2.0` … `/v2.6`; `/v2` = 2.6).
/// Behaviour is identical across 2.x minors on registrar and verifier.
pub const SERVER_SERVED_VERSIONS: [ApiVersion; 7] = [
    ApiVersion::new(2, 0),
    ApiVersion::new(2, 1),
    ApiVersion::new(2, 2),
    ApiVersion::new(2, 3),
    ApiVersion::new(2, 4),
    ApiVersion::new(2, 5),
    ApiVersion::new(2, 6),
];

/// What the agent advertises and serves, as rust-keylime does (`/v2.1` … `/v2.5`).
pub const AGENT_SUPPORTED_VERSIONS: [ApiVersion; 5] = [
    ApiVersion::new(2, 1),
    ApiVersion::new(2, 2),
    ApiVersion::new(2, 3),
    ApiVersion::new(2, 4),
    ApiVersion::new(2, 5),
];

/// Newest agent version (`supported_version` in the agent's `/version`).
pub const AGENT_CURRENT_VERSION: ApiVersion = ApiVersion::new(2, 5);

/// `results` of registrar/verifier `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerVersionInfo {
    pub current_version: ApiVersion,
    pub supported_versions: Vec<ApiVersion>,
}

impl ServerVersionInfo {
    /// The body upstream 7.14.3 registrar and verifier return.
    pub fn upstream() -> Self {
        Self {
            current_version: SERVER_CURRENT_VERSION,
            supported_versions: SERVER_ADVERTISED_VERSIONS.to_vec(),
        }
    }
}

/// `results` of the agent's `GET /version` (rust-keylime: singular latest + list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentVersionInfo {
    pub supported_version: ApiVersion,
    pub supported_versions: Vec<ApiVersion>,
}

impl AgentVersionInfo {
    pub fn vouch_agent() -> Self {
        Self {
            supported_version: AGENT_CURRENT_VERSION,
            supported_versions: AGENT_SUPPORTED_VERSIONS.to_vec(),
        }
    }
}

/// Client-side reading of any `/version` `results`: `supported_versions` first, then the singular
/// `supported_version`, then `current_version` (as `tenant.py:Tenant.init_add` and
/// `cloud_verifier_tornado.py:update_agent_api_version` do). Unparseable entries are ignored.
pub fn advertised_versions(results: &serde_json::Value) -> Vec<ApiVersion> {
    let parse = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<ApiVersion>().ok());
    if let Some(list) = results.get("supported_versions").and_then(|v| v.as_array()) {
        return list.iter().filter_map(parse).collect();
    }
    ["supported_version", "current_version"]
        .iter()
        .find_map(|k| results.get(*k).and_then(parse))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::envelope::Envelope;
    use serde_json::json;

    #[test]
    fn parse_display_order() {
        let v: ApiVersion = "2.6".parse().unwrap();
        assert_eq!(v, ApiVersion::new(2, 6));
        assert_eq!(v.to_string(), "2.6");
        assert!(ApiVersion::new(2, 10) > ApiVersion::new(2, 9));
        for bad in ["", "2", "2.", ".6", "v2.6", "2.6.1", "a.b", "2.-1"] {
            assert!(bad.parse::<ApiVersion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn url_segments() {
        let s = &SERVER_SERVED_VERSIONS;
        assert_eq!(
            ApiVersion::from_url_segment("v2.6", s),
            Some(ApiVersion::new(2, 6))
        );
        assert_eq!(
            ApiVersion::from_url_segment("v2.1", s),
            Some(ApiVersion::new(2, 1))
        );
        assert_eq!(
            ApiVersion::from_url_segment("v2", s),
            Some(ApiVersion::new(2, 6))
        );
        assert_eq!(ApiVersion::from_url_segment("v9.9", s), None);
        assert_eq!(ApiVersion::from_url_segment("v3", s), None);
        assert_eq!(ApiVersion::from_url_segment("2.6", s), None);
        assert_eq!(ApiVersion::new(2, 5).url_prefix(), "/v2.5");
    }

    #[test]
    fn negotiation_matches_upstream_example() {
        // tenant (major < 3) vs rust-keylime agent → 2.5 (wire doc §1)
        let tenant: Vec<_> = SERVER_ADVERTISED_VERSIONS
            .iter()
            .copied()
            .filter(|v| v.major < 3)
            .collect();
        assert_eq!(
            negotiate(&tenant, &AGENT_SUPPORTED_VERSIONS),
            Some(ApiVersion::new(2, 5))
        );
        assert_eq!(
            negotiate(&[ApiVersion::new(1, 0)], &AGENT_SUPPORTED_VERSIONS),
            None
        );
    }

    #[test]
    fn version_bodies_match_upstream() {
        let v = serde_json::to_value(Envelope::success(ServerVersionInfo::upstream())).unwrap();
        assert_eq!(
            v,
            json!({"code": 200, "status": "Success", "results": {"current_version": "2.6",
                "supported_versions": ["1.0","2.0","2.1","2.2","2.3","2.4","2.5","2.6","3.0"]}})
        );
        let a = serde_json::to_value(AgentVersionInfo::vouch_agent()).unwrap();
        assert_eq!(
            a,
            json!({"supported_version": "2.5", "supported_versions": ["2.1","2.2","2.3","2.4","2.5"]})
        );
        assert_eq!(advertised_versions(&a).len(), 5);
        assert_eq!(
            advertised_versions(&json!({"supported_version": "2.2"})),
            vec![ApiVersion::new(2, 2)]
        );
    }
}
