//! The TPM context and everything that runs on its owner thread.
//!
//! Object slots: swtpm (and many TPMs without a resource manager) hold only 3 loaded transient
//! objects, so at most two are ever loaded at once:
//! - EKs are created once per kind, saved with ContextSave and flushed; each use reloads the
//!   saved context (one fast ContextLoad) and flushes it afterwards.
//! - One AK stays resident — the last one used — so repeated quotes cost one command. Using a
//!   different AK flushes it and loads the new one under its EK.

use crate::convert::{private_from_tpm2b, private_to_tpm2b, public_from_tss, public_to_tss};
use crate::error::TpmError;
use crate::keys::{ak_template, Ak, AkKind, EkKind};
use crate::tcti::Tcti;
use std::collections::HashMap;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{EncryptedSecret, IdObject, SymmetricDefinition};
use tss_esapi::utils::TpmsContext;
use tss_esapi::Context;
use vouch_core::tpm::{HashAlg, Name, Public};

struct SavedEk {
    context: TpmsContext,
    public: Public,
}

pub(crate) struct Device {
    pub(crate) ctx: Context,
    pub(crate) tcti: Tcti,
    eks: HashMap<EkKind, SavedEk>,
    resident_ak: Option<(Name, KeyHandle)>,
    pub(crate) nv_buffer_max: Option<usize>,
}

impl Device {
    pub(crate) fn open(tcti: &Tcti) -> Result<Device, TpmError> {
        let ctx = Context::new(tcti.name_conf()?).map_err(|e| TpmError::Connect {
            tcti: tcti.to_string(),
            detail: crate::error::describe(e).1,
        })?;
        Ok(Device {
            ctx,
            tcti: tcti.clone(),
            eks: HashMap::new(),
            resident_ak: None,
            nv_buffer_max: None,
        })
    }

    /// Run `f` with an empty password in session slot 1.
    pub(crate) fn with_password<T>(
        &mut self,
        f: impl FnOnce(&mut Context) -> tss_esapi::Result<T>,
    ) -> tss_esapi::Result<T> {
        self.ctx
            .execute_with_session(Some(AuthSession::Password), f)
    }

    // ---- EK ----

    /// Create (or recreate: the templates are deterministic) the EK of `kind`.
    pub(crate) fn create_ek(&mut self, kind: EkKind) -> Result<Public, TpmError> {
        let handle = self.load_ek(kind)?;
        self.flush(handle.into());
        self.eks
            .get(&kind)
            .map(|s| s.public.clone())
            .ok_or(TpmError::Closed)
    }

    /// Load the EK of `kind` (from its saved context, or by CreatePrimary). The caller flushes.
    fn load_ek(&mut self, kind: EkKind) -> Result<KeyHandle, TpmError> {
        if let Some(saved) = self.eks.get(&kind) {
            let context = saved.context.clone();
            match self.ctx.context_load(context) {
                Ok(h) => return Ok(h.into()),
                // Saved contexts die with a TPM reset; fall back to CreatePrimary.
                Err(e) => tracing::debug!(?kind, "EK context no longer loads ({e}); recreating"),
            }
            self.eks.remove(&kind);
        }
        let template = kind.template()?;
        let created = self
            .with_password(|ctx| {
                ctx.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
            })
            .map_err(TpmError::command("CreatePrimary (EK)"))?;
        let handle = created.key_handle;
        let saved = public_from_tss(&created.out_public).and_then(|public| {
            let context = self
                .ctx
                .context_save(handle.into())
                .map_err(TpmError::command("ContextSave (EK)"))?;
            Ok(SavedEk { context, public })
        });
        match saved {
            Ok(saved) => {
                self.eks.insert(kind, saved);
                Ok(handle)
            }
            Err(e) => {
                self.flush(handle.into());
                Err(e)
            }
        }
    }

    /// Run `f` with the EK loaded and an authorization for its USER role, then clean up.
    fn with_ek<T>(
        &mut self,
        kind: EkKind,
        f: impl FnOnce(&mut Device, KeyHandle, AuthSession) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let ek = self.load_ek(kind)?;
        let session = match self.ek_session(kind) {
            Ok(s) => s,
            Err(e) => {
                self.flush(ek.into());
                return Err(e);
            }
        };
        let result = f(self, ek, session);
        if let AuthSession::PolicySession(_) = session {
            self.flush(SessionHandle::from(session).into());
        }
        self.flush(ek.into());
        result
    }

    /// PolicySecret(TPM_RH_ENDORSEMENT) for low-range EKs (their authPolicy, policy A);
    /// a password for high-range ones (userWithAuth).
    fn ek_session(&mut self, kind: EkKind) -> Result<AuthSession, TpmError> {
        if !kind.needs_policy() {
            return Ok(AuthSession::Password);
        }
        let session = self
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Policy,
                SymmetricDefinition::Null,
                HashingAlgorithm::Sha256,
            )
            .map_err(TpmError::command("StartAuthSession"))?
            .ok_or_else(|| TpmError::Command {
                command: "StartAuthSession",
                code: None,
                detail: "no session returned".into(),
            })?;
        let policy =
            PolicySession::try_from(session).map_err(TpmError::conversion("policy session"))?;
        let secret = self.with_password(|ctx| {
            ctx.policy_secret(
                policy,
                tss_esapi::handles::AuthHandle::Endorsement,
                Default::default(),
                Default::default(),
                Default::default(),
                None,
            )
        });
        if let Err(e) = secret {
            self.flush(SessionHandle::from(session).into());
            return Err(TpmError::command("PolicySecret (endorsement)")(e));
        }
        Ok(session)
    }

    pub(crate) fn flush(&mut self, handle: ObjectHandle) {
        if let Err(e) = self.ctx.flush_context(handle) {
            tracing::warn!(tcti = %self.tcti, "FlushContext failed: {e}");
        }
    }

    // ---- AK ----

    pub(crate) fn create_ak(
        &mut self,
        parent: EkKind,
        kind: AkKind,
        hash: HashAlg,
    ) -> Result<Ak, TpmError> {
        let template = ak_template(kind, hash)?;
        let created = self.with_ek(parent, |dev, ek, session| {
            dev.ctx
                .execute_with_session(Some(session), |ctx| {
                    ctx.create(ek, template, None, None, None, None)
                })
                .map_err(TpmError::command("Create (AK)"))
        })?;
        let public = public_from_tss(&created.out_public)?;
        Ok(Ak {
            name: public.name(),
            private: private_to_tpm2b(&created.out_private),
            public,
            parent,
        })
    }

    /// Make `ak` the resident AK (loading it under its EK if another one is resident).
    pub(crate) fn ak_handle(&mut self, ak: &Ak) -> Result<KeyHandle, TpmError> {
        if let Some((name, handle)) = &self.resident_ak {
            if *name == ak.name {
                return Ok(*handle);
            }
        }
        if let Some((_, old)) = self.resident_ak.take() {
            self.flush(old.into());
        }
        let public = public_to_tss(&ak.public)?;
        let private = private_from_tpm2b(&ak.private)?;
        let handle = self.with_ek(ak.parent, |dev, ek, session| {
            dev.ctx
                .execute_with_session(Some(session), |ctx| ctx.load(ek, private, public))
                .map_err(TpmError::command("Load (AK)"))
        })?;
        self.resident_ak = Some((ak.name.clone(), handle));
        Ok(handle)
    }

    pub(crate) fn activate_credential(
        &mut self,
        ak: &Ak,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        let id_object = IdObject::try_from(id_object.to_vec())
            .map_err(TpmError::conversion("TPM2B_ID_OBJECT"))?;
        let secret = EncryptedSecret::try_from(encrypted_secret.to_vec())
            .map_err(TpmError::conversion("TPM2B_ENCRYPTED_SECRET"))?;
        let ak_handle = self.ak_handle(ak)?;
        self.with_ek(ak.parent, |dev, ek, ek_session| {
            dev.ctx
                .execute_with_sessions(
                    (Some(AuthSession::Password), Some(ek_session), None),
                    |ctx| ctx.activate_credential(ak_handle, ek, id_object, secret),
                )
                .map(|d| d.value().to_vec())
                .map_err(TpmError::command("ActivateCredential"))
        })
    }
}
