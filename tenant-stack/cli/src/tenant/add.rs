//! `vouch agent add`: upstream's tenant flow (`tenant.py:init_add`, `preloop`, `do_quote`,
//! `do_cvadd`, `do_verify`; wire doc §6), in three public steps so each can be driven alone:
//!
//! 1. [`Tenant::deliver_to_agent`]: registrar record → EK certificate check → K, U, V →
//!    identity quote with a fresh nonce, verified with the registrar's AK, NK bound in PCR 16 →
//!    `POST /keys/ukey` (U encrypted to the NK, auth_tag, payload). Nothing reaches the agent
//!    before its quote checked out.
//! 2. [`Tenant::add_to_verifier`]: `POST /agents/{id}` with V and the policies (§5.1; the
//!    PCR, runtime and measured-boot policies of [`Policies`]), and with a `--cert` payload
//!    the `revocation_key` and `metadata` upstream's `--cert` sends.
//! 3. [`Tenant::verify_key`]: `/keys/verify` challenges until the agent, holding U and V,
//!    answers `HMAC(K, challenge)` (bounded).

use super::error::TenantError;
use super::http::Service;
use super::payload::{NodeCert, Payload};
use super::policies::Policies;
use super::progress::Progress;
use super::Tenant;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::Method;
use std::time::{Duration, Instant, SystemTime};
use vouch_core::api::agent::{QuoteResponse, UkeyRequest, VerifyResponse};
use vouch_core::api::binding::{check_nk_binding, DATA_PCR};
use vouch_core::api::quote_string::QuoteString;
use vouch_core::api::registrar::{AgentId, AgentRecord};
use vouch_core::api::verifier::{AddAgentRequest, PortField};
use vouch_core::api::version::{ApiVersion, AGENT_SUPPORTED_VERSIONS};
use vouch_core::ekcert::{verify_ek_cert, EkCaStore};
use vouch_core::keylime::{
    auth_tag, encrypt_payload, encrypt_share_to_nk, split, verify_challenge_hmac, BootstrapKey,
    Challenge, KeyHmac, KeyShare,
};
use vouch_core::keys::VerifyingKey;
use vouch_core::quote::QuoteError;
use vouch_core::tpm::Public;

/// Upstream tenant defaults (`tenant.conf`: `accept_tpm_*_algs`), checked on the identity
/// quote and sent to the verifier.
pub const ACCEPT_TPM_HASH_ALGS: [&str; 3] = ["sha512", "sha384", "sha256"];
pub const ACCEPT_TPM_ENCRYPTION_ALGS: [&str; 2] = ["ecc", "rsa"];
pub const ACCEPT_TPM_SIGNING_ALGS: [&str; 2] = ["ecschnorr", "rsassa"];

/// How the EK certificate from the registrar is checked (`[tenant] require_ek_cert`).
#[derive(Debug)]
pub enum EkCheck {
    /// It must exist, chain to this store and certify the registrar's `ek_tpm`.
    Store(EkCaStore),
    /// Trust the registrar's check (Vouch's registrar chains EK certs itself).
    Skip,
}

#[derive(Debug)]
pub struct AddOptions {
    pub agent_id: AgentId,
    /// Agent address; defaults to the registrar's `ip` / `port` (upstream).
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub payload: Option<Payload>,
    /// PCR values and the runtime / measured-boot policies, mask derived as upstream.
    pub policies: Policies,
    pub ek_check: EkCheck,
    /// Bound of the `/keys/verify` loop.
    pub verify_timeout: Duration,
}

/// What step 1 leaves for steps 2 and 3.
#[derive(Debug)]
pub struct Delivered {
    pub agent_id: AgentId,
    pub agent: Service,
    pub agent_version: ApiVersion,
    pub ip: String,
    pub port: u16,
    pub record: AgentRecord,
    pub key: BootstrapKey,
    /// The verifier's share.
    pub v: KeyShare,
    /// The NK PEM exactly as the agent sent it.
    pub nk_pem: String,
    /// The agent's certificate when the payload was a `--cert` package.
    pub cert: Option<NodeCert>,
}

impl Tenant {
    /// Every step: agent, verifier, key check. If the key check fails after the verifier has
    /// the agent, the verifier is told to stop (`PUT …/stop`, as `tenant.py:do_verify`).
    pub async fn add(&self, opts: &AddOptions, p: &mut Progress) -> Result<(), TenantError> {
        let d = self.deliver_to_agent(opts, p).await?;
        self.add_to_verifier(&d, &opts.policies, p).await?;
        if let Err(e) = self.verify_key(&d, opts.verify_timeout, p).await {
            p.step(format!(
                "key check failed; asking the verifier to stop polling {}",
                d.agent_id
            ));
            if let Err(stop) = self.verifier_stop(&d.agent_id).await {
                p.step(format!("verifier stop failed too: {stop}"));
            }
            return Err(e);
        }
        p.step(format!("agent {} added", d.agent_id));
        Ok(())
    }

    pub async fn deliver_to_agent(
        &self,
        opts: &AddOptions,
        p: &mut Progress,
    ) -> Result<Delivered, TenantError> {
        let id = &opts.agent_id;
        let agent_name = id.to_string();
        let record_err = |field: &'static str, why: String| TenantError::Record {
            agent: agent_name.clone(),
            field,
            why,
        };

        // 1–2: the registrar's record (AK, EK, EK cert, address).
        let record = self.registrar_record(id).await?;
        if record.agent_id != id.as_str() {
            return Err(record_err(
                "agent_id",
                format!("the registrar returned the record of {:?}", record.agent_id),
            ));
        }
        p.step(format!(
            "registrar {}: agent {id} is registered and active (regcount {})",
            self.registrar.base, record.regcount
        ));
        let aik_raw = B64
            .decode(record.aik_tpm.trim())
            .map_err(|e| record_err("aik_tpm", format!("not base64: {e}")))?;
        let aik = Public::from_tpm2b(&aik_raw)
            .map_err(|e| record_err("aik_tpm", format!("not a TPM2B_PUBLIC: {e}")))?;
        let ak = VerifyingKey::from_public(&aik)
            .map_err(|e| record_err("aik_tpm", format!("unusable: {e}")))?;

        // 5 (upstream checks the EK after the quote; nothing is sent before both pass anyway).
        self.check_ek(&record, &opts.ek_check, p)?;

        // 3: the agent's address and API version.
        let ip = opts
            .ip
            .clone()
            .or_else(|| record.ip.clone().filter(|s| !s.is_empty()))
            .ok_or_else(|| TenantError::NoAddress {
                agent: agent_name.clone(),
            })?;
        let port = opts
            .port
            .or(record.port)
            .ok_or_else(|| TenantError::NoAddress {
                agent: agent_name.clone(),
            })?;
        // Over mTLS when the agent registered its certificate (§7).
        let agent = self.agent_service(&agent_name, &ip, port, record.mtls_cert.as_deref())?;
        let version = agent.negotiate(&AGENT_SUPPORTED_VERSIONS).await?;
        let prefix = version.url_prefix();
        p.step(format!("agent {id} at {}: API {version}", agent.base));

        // 4: K, U, V, auth_tag, payload.
        let key = BootstrapKey::generate()?;
        let (u, v) = split(&key)?;
        let tag = auth_tag(&key, id.as_str());
        let payload = match &opts.payload {
            Some(pl) => {
                let enc = encrypt_payload(&key, &pl.bytes)?;
                p.step(format!("payload: {}, encrypted under K", pl.description));
                Some(enc.to_base64())
            }
            None => None,
        };

        // 5: identity quote over a fresh nonce (random_password(20), as upstream).
        let nonce = Challenge::generate()?;
        let quote: QuoteResponse = agent
            .call_json::<_, ()>(
                Method::GET,
                &format!("{prefix}/quotes/identity?nonce={nonce}"),
                None,
            )
            .await?;
        let nk_pem = check_identity_quote(&agent_name, &quote, &ak, nonce.as_str())?;
        p.step(format!(
            "identity quote verified: signed by the registrar's AK, fresh nonce, node key bound in PCR {DATA_PCR} ({})",
            quote.hash_alg
        ));

        // 6: U to the agent.
        let encrypted = encrypt_share_to_nk(&nk_pem, &u)?;
        let body = UkeyRequest {
            encrypted_key: encrypted.to_base64(),
            auth_tag: tag.to_hex(),
            payload,
        };
        agent
            .call(Method::POST, &format!("{prefix}/keys/ukey"), Some(&body))
            .await?;
        p.step(format!(
            "U delivered to agent {id} (encrypted to its node key)"
        ));

        Ok(Delivered {
            agent_id: id.clone(),
            agent,
            agent_version: version,
            ip,
            port,
            record,
            key,
            v,
            nk_pem,
            cert: opts.payload.as_ref().and_then(|pl| pl.cert.clone()),
        })
    }

    fn check_ek(
        &self,
        record: &AgentRecord,
        check: &EkCheck,
        p: &mut Progress,
    ) -> Result<(), TenantError> {
        let agent = record.agent_id.clone();
        let store = match check {
            EkCheck::Skip => {
                p.step("EK certificate: not checked (--skip-ek-cert-check)");
                return Ok(());
            }
            EkCheck::Store(store) => store,
        };
        let cert_b64 = record
            .ekcert
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| TenantError::NoEkCert {
                agent: agent.clone(),
            })?;
        let der = B64
            .decode(cert_b64.trim())
            .map_err(|e| TenantError::Record {
                agent: agent.clone(),
                field: "ekcert",
                why: format!("not base64 DER: {e}"),
            })?;
        let ek = match record.ek_tpm.as_deref() {
            Some(t) => {
                let raw = B64.decode(t.trim()).map_err(|e| TenantError::Record {
                    agent: agent.clone(),
                    field: "ek_tpm",
                    why: format!("not base64: {e}"),
                })?;
                Some(Public::from_tpm2b(&raw).map_err(|e| TenantError::Record {
                    agent: agent.clone(),
                    field: "ek_tpm",
                    why: format!("not a TPM2B_PUBLIC: {e}"),
                })?)
            }
            None => None,
        };
        let verified = verify_ek_cert(&der, store, ek.as_ref(), SystemTime::now())
            .map_err(|cause| TenantError::EkCert { agent, cause })?;
        p.step(format!(
            "EK certificate chains to {} ({})",
            verified.anchor(),
            store.source()
        ));
        Ok(())
    }

    /// The verifier's add body (§5.1, `tenant.py:do_cvadd`): V, the agent's address and
    /// identity from the registrar, the policies, and a `--cert` package's revocation data.
    pub fn verifier_request(&self, d: &Delivered, policies: &Policies) -> AddAgentRequest {
        let (verifier_ip, verifier_port) = match reqwest::Url::parse(&self.verifier.base) {
            Ok(u) => (
                u.host_str().map(str::to_owned),
                u.port_or_known_default().map(PortField),
            ),
            Err(_) => (None, None),
        };
        let f = policies.fields();
        AddAgentRequest {
            v: Some(d.v.to_base64()),
            cloudagent_ip: d.ip.clone(),
            cloudagent_port: PortField(d.port),
            verifier_ip,
            verifier_port,
            tpm_policy: f.tpm_policy,
            runtime_policy: f.runtime_policy,
            runtime_policy_name: f.runtime_policy_name,
            runtime_policy_key: f.runtime_policy_key,
            mb_policy: f.mb_policy,
            mb_policy_name: f.mb_policy_name,
            ima_sign_verification_keys: String::new(),
            // Upstream `--cert`: the certificate to revoke and the key notices are signed with.
            metadata: d
                .cert
                .as_ref()
                .map_or_else(|| "{}".to_owned(), NodeCert::metadata),
            revocation_key: d
                .cert
                .as_ref()
                .map(|c| c.revocation_key_pem.clone())
                .unwrap_or_default(),
            accept_tpm_hash_algs: ACCEPT_TPM_HASH_ALGS.map(String::from).to_vec(),
            accept_tpm_encryption_algs: ACCEPT_TPM_ENCRYPTION_ALGS.map(String::from).to_vec(),
            accept_tpm_signing_algs: ACCEPT_TPM_SIGNING_ALGS.map(String::from).to_vec(),
            ak_tpm: d.record.aik_tpm.clone(),
            mtls_cert: d.record.mtls_cert.clone(),
            supported_version: Some(d.agent_version),
        }
    }

    /// `POST /v2.x/agents/{id}` on the verifier with [`Self::verifier_request`], then one
    /// status read.
    pub async fn add_to_verifier(
        &self,
        d: &Delivered,
        policies: &Policies,
        p: &mut Progress,
    ) -> Result<(), TenantError> {
        let body = self.verifier_request(d, policies);
        let prefix = self
            .verifier
            .negotiate(&vouch_core::api::version::SERVER_SERVED_VERSIONS)
            .await?
            .url_prefix();
        self.verifier
            .call(
                Method::POST,
                &format!("{prefix}/agents/{}", d.agent_id),
                Some(&body),
            )
            .await?;
        p.step(format!(
            "verifier {}: agent {} added with V and tpm_policy {}",
            self.verifier.base, d.agent_id, body.tpm_policy
        ));
        for line in policies.describe() {
            p.step(line);
        }
        if let Some(c) = &d.cert {
            p.step(format!(
                "verifier holds the RevocationNotifier key and metadata {} (certificate {} is \
                 revoked if the agent fails)",
                body.metadata, c.serial
            ));
        }
        if let Ok(status) = self.verifier_status(&d.agent_id).await {
            p.step(format!(
                "verifier reports {}",
                status.operational_state.display_name()
            ));
        }
        Ok(())
    }

    /// `GET /keys/verify?challenge=C` until the agent answers `HMAC-SHA384(K, C)`; it needs U
    /// and V first, so 400 "Bootstrap key not yet available" and wrong answers are retried
    /// until `timeout` (upstream: `max_retries` × `retry_interval`).
    pub async fn verify_key(
        &self,
        d: &Delivered,
        timeout: Duration,
        p: &mut Progress,
    ) -> Result<(), TenantError> {
        let prefix = d.agent_version.url_prefix();
        let deadline = Instant::now() + timeout;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let challenge = Challenge::generate()?;
            let path = format!("{prefix}/keys/verify?challenge={challenge}");
            let last = match d.agent.send::<()>(Method::GET, &path, None).await {
                Ok(r) if r.code == 200 => {
                    match serde_json::from_value::<VerifyResponse>(r.results)
                        .map_err(|e| e.to_string())
                        .and_then(|v| KeyHmac::from_hex(&v.hmac).map_err(|e| e.to_string()))
                    {
                        Ok(answer) if verify_challenge_hmac(&d.key, &challenge, &answer) => {
                            p.step(format!(
                                "agent {} proved it holds the bootstrap key K (attempt {attempts})",
                                d.agent_id
                            ));
                            return Ok(());
                        }
                        Ok(_) => "its HMAC of the challenge is not made with our K".to_owned(),
                        Err(e) => format!("malformed answer: {e}"),
                    }
                }
                Ok(r) => format!("{} {}", r.code, r.status),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(TenantError::VerifyTimeout {
                    agent: d.agent_id.to_string(),
                    seconds: timeout.as_secs(),
                    last,
                });
            }
            if attempts == 1 {
                p.step(format!("waiting for the agent to combine U and V ({last})"));
            }
            // V usually reaches the agent a few tens of ms after the add: look again soon, then
            // back off to upstream's pace (25, 50, 100, 200, 400, then every 500 ms).
            let delay_ms = (25u64 << (attempts - 1).min(5)).min(500);
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
    }
}

/// Upstream's `Tpm.check_quote` for an identity quote: accepted algorithms, signature by the
/// registrar's AK over our nonce, PCR 16 = H(0 || H(NK PEM)), a clock that was never rolled
/// back (`safe`). Returns the NK PEM.
fn check_identity_quote(
    agent: &str,
    quote: &QuoteResponse,
    ak: &VerifyingKey,
    nonce: &str,
) -> Result<String, TenantError> {
    let content = |why: String| TenantError::QuoteContent {
        agent: agent.to_owned(),
        why,
    };
    for (what, value, accepted) in [
        ("hash_alg", &quote.hash_alg, &ACCEPT_TPM_HASH_ALGS[..]),
        ("enc_alg", &quote.enc_alg, &ACCEPT_TPM_ENCRYPTION_ALGS[..]),
        ("sign_alg", &quote.sign_alg, &ACCEPT_TPM_SIGNING_ALGS[..]),
    ] {
        if !accepted.contains(&value.as_str()) {
            return Err(content(format!(
                "{what} {value:?} is not accepted (accepted: {})",
                accepted.join(", ")
            )));
        }
    }
    let nk_pem = quote
        .pubkey
        .clone()
        .ok_or_else(|| content("no pubkey (node key) in the identity quote".into()))?;
    let parsed = QuoteString::parse(&quote.quote).map_err(|cause| TenantError::QuoteFormat {
        agent: agent.to_owned(),
        cause,
    })?;
    if parsed.hash_alg().name() != quote.hash_alg {
        return Err(content(format!(
            "hash_alg says {} but the quote is over the {} bank",
            quote.hash_alg,
            parsed.hash_alg().name()
        )));
    }
    let verified =
        parsed
            .verify(ak, nonce.as_bytes(), &[DATA_PCR])
            .map_err(|cause| match cause {
                QuoteError::Signature(_) => TenantError::QuoteWrongAk {
                    agent: agent.to_owned(),
                    cause,
                },
                QuoteError::NonceMismatch { expected, found } => TenantError::QuoteReplay {
                    agent: agent.to_owned(),
                    expected: hex_to_text(&expected),
                    found: hex_to_text(&found),
                },
                cause => TenantError::Quote {
                    agent: agent.to_owned(),
                    cause,
                },
            })?;
    if !verified.safe() {
        return Err(content(
            "the TPM clock is not 'safe' (it may have been rolled back)".into(),
        ));
    }
    check_nk_binding(&verified, &nk_pem).map_err(|cause| TenantError::Binding {
        agent: agent.to_owned(),
        cause,
    })?;
    Ok(nk_pem)
}

/// Nonces are ASCII; show them as text when they are, else as hex.
fn hex_to_text(h: &str) -> String {
    hex::decode(h)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| s.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| h.to_owned())
}
