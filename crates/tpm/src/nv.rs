//! NV indexes: EK certificates, and small secrets (a key share) the agent keeps across reboots.

use crate::device::Device;
use crate::error::TpmError;
use crate::keys::EkKind;
use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, ObjectHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::structures::{CapabilityData, MaxNvBuffer, NvPublic, NvPublicBuilder};

/// Who may read and write an index defined with [`crate::TpmHandle::nv_define`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NvAccess {
    /// OWNERREAD | OWNERWRITE: authorized by the owner hierarchy (empty owner auth).
    Owner,
    /// AUTHREAD | AUTHWRITE with an empty index auth value.
    Index,
}

/// TPM_RC_HANDLE for handle 1: the index is not defined.
const RC_HANDLE_1: u32 = 0x18b;

impl Device {
    /// ESYS handle for an existing index; `None` if it is not defined. Close it after use.
    fn nv_open(&mut self, index: u32) -> Result<Option<NvIndexHandle>, TpmError> {
        let tpm_handle = NvIndexTpmHandle::new(index).map_err(|_| not_nv_index(index))?;
        // Ask first: probing an undefined index through NV_ReadPublic makes tpm2-tss log an
        // ERROR line for what is an ordinary answer (an agent's first start, for one).
        if !self.nv_defined(index)? {
            return Ok(None);
        }
        match self.ctx.tr_from_tpm_public(TpmHandle::NvIndex(tpm_handle)) {
            Ok(h) => Ok(Some(h.into())),
            Err(e) => {
                let err = TpmError::command("NV_ReadPublic")(e);
                if err.response_code() == Some(RC_HANDLE_1) {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Whether `index` is defined, from the TPM's list of NV handles.
    fn nv_defined(&mut self, index: u32) -> Result<bool, TpmError> {
        let (data, _more) = self
            .ctx
            .get_capability(CapabilityType::Handles, index, 1)
            .map_err(TpmError::command("GetCapability(handles)"))?;
        Ok(match data {
            CapabilityData::Handles(list) => list.iter().any(|h| u32::from(*h) == index),
            _ => false,
        })
    }

    fn nv_close(&mut self, handle: NvIndexHandle) {
        let mut h = ObjectHandle::from(handle);
        if let Err(e) = self.ctx.tr_close(&mut h) {
            tracing::warn!("closing NV handle: {e}");
        }
    }

    fn buffer_max(&mut self) -> usize {
        if let Some(n) = self.nv_buffer_max {
            return n;
        }
        let n = tss_esapi::abstraction::nv::max_nv_buffer_size(&mut self.ctx)
            .unwrap_or(512)
            .min(MaxNvBuffer::MAX_SIZE);
        self.nv_buffer_max = Some(n);
        n
    }

    pub(crate) fn nv_define(
        &mut self,
        index: u32,
        size: u16,
        access: NvAccess,
    ) -> Result<(), TpmError> {
        let tpm_handle = NvIndexTpmHandle::new(index).map_err(|_| not_nv_index(index))?;
        let owner = access == NvAccess::Owner;
        let attributes = NvIndexAttributesBuilder::new()
            .with_owner_read(owner)
            .with_owner_write(owner)
            .with_auth_read(!owner)
            .with_auth_write(!owner)
            .with_no_da(true)
            .build()
            .map_err(TpmError::conversion("NV attributes"))?;
        let public = NvPublicBuilder::new()
            .with_nv_index(tpm_handle)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(attributes)
            .with_data_area_size(usize::from(size))
            .build()
            .map_err(TpmError::conversion("NV public area"))?;
        let handle = self
            .with_password(|ctx| ctx.nv_define_space(Provision::Owner, None, public))
            .map_err(TpmError::command("NV_DefineSpace"))?;
        self.nv_close(handle);
        Ok(())
    }

    pub(crate) fn nv_undefine(&mut self, index: u32) -> Result<(), TpmError> {
        let handle = self.nv_open(index)?.ok_or_else(|| {
            TpmError::InvalidArgument(format!("NV index {index:#010x} is not defined"))
        })?;
        // UndefineSpace marks the ESYS handle closed on success.
        let result = self.with_password(|ctx| ctx.nv_undefine_space(Provision::Owner, handle));
        if result.is_err() {
            self.nv_close(handle);
        }
        result.map_err(TpmError::command("NV_UndefineSpace"))
    }

    fn nv_auth(public: &NvPublic, handle: NvIndexHandle, write: bool) -> NvAuth {
        let attrs = public.attributes();
        let owner = if write {
            attrs.owner_write()
        } else {
            attrs.owner_read()
        };
        if owner {
            NvAuth::Owner
        } else {
            NvAuth::NvIndex(handle)
        }
    }

    /// Write `data` at offset 0, in chunks the TPM accepts.
    pub(crate) fn nv_write(&mut self, index: u32, data: &[u8]) -> Result<(), TpmError> {
        let handle = self.nv_open(index)?.ok_or_else(|| {
            TpmError::InvalidArgument(format!("NV index {index:#010x} is not defined"))
        })?;
        let result = self.nv_write_open(handle, data);
        self.nv_close(handle);
        result
    }

    fn nv_write_open(&mut self, handle: NvIndexHandle, data: &[u8]) -> Result<(), TpmError> {
        let (public, _) = self
            .ctx
            .nv_read_public(handle)
            .map_err(TpmError::command("NV_ReadPublic"))?;
        if data.len() > public.data_size() {
            return Err(TpmError::InvalidArgument(format!(
                "{} bytes do not fit NV index {:#010x} of {} bytes",
                data.len(),
                u32::from(public.nv_index()),
                public.data_size()
            )));
        }
        let auth = Self::nv_auth(&public, handle, true);
        let chunk = self.buffer_max();
        for (i, part) in data.chunks(chunk).enumerate() {
            let offset = u16::try_from(i * chunk)
                .map_err(|_| TpmError::InvalidArgument("NV offset over 64 KiB".into()))?;
            let buf =
                MaxNvBuffer::try_from(part.to_vec()).map_err(TpmError::conversion("NV buffer"))?;
            self.with_password(|ctx| ctx.nv_write(auth, handle, buf, offset))
                .map_err(TpmError::command("NV_Write"))?;
        }
        Ok(())
    }

    /// The whole index; `None` if it is not defined.
    pub(crate) fn nv_read(&mut self, index: u32) -> Result<Option<Vec<u8>>, TpmError> {
        let Some(handle) = self.nv_open(index)? else {
            return Ok(None);
        };
        let result = self.nv_read_open(handle);
        self.nv_close(handle);
        result.map(Some)
    }

    fn nv_read_open(&mut self, handle: NvIndexHandle) -> Result<Vec<u8>, TpmError> {
        let (public, _) = self
            .ctx
            .nv_read_public(handle)
            .map_err(TpmError::command("NV_ReadPublic"))?;
        let auth = Self::nv_auth(&public, handle, false);
        let size = public.data_size();
        let chunk = self.buffer_max();
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let n = chunk.min(size - out.len());
            let (n16, off16) = (u16::try_from(n), u16::try_from(out.len()));
            let (Ok(n16), Ok(off16)) = (n16, off16) else {
                return Err(TpmError::InvalidArgument("NV index over 64 KiB".into()));
            };
            let part = self
                .with_password(|ctx| ctx.nv_read(auth, handle, n16, off16))
                .map_err(TpmError::command("NV_Read"))?;
            if part.is_empty() {
                break;
            }
            out.extend_from_slice(part.value());
        }
        Ok(out)
    }

    /// The EK certificate (DER) of `kind`, without the padding after its DER length.
    pub(crate) fn read_ek_cert(&mut self, kind: EkKind) -> Result<Option<Vec<u8>>, TpmError> {
        let Some(mut cert) = self.nv_read(kind.cert_nv_index())? else {
            return Ok(None);
        };
        if let Some(len) = der_length(&cert) {
            if len <= cert.len() {
                cert.truncate(len);
            }
        }
        Ok(Some(cert))
    }
}

fn not_nv_index(index: u32) -> TpmError {
    TpmError::InvalidArgument(format!(
        "{index:#010x} is not an NV index handle (0x01xxxxxx)"
    ))
}

/// Total length of a DER SEQUENCE from its header, if it is one.
fn der_length(b: &[u8]) -> Option<usize> {
    if b.first() != Some(&0x30) {
        return None;
    }
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some(2 + usize::from(first));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | usize::from(*b.get(2 + i)?);
    }
    Some(2 + n + len)
}

#[cfg(test)]
mod tests {
    use super::der_length;

    #[test]
    fn der_lengths() {
        assert_eq!(der_length(&[0x30, 0x03, 1, 2, 3, 0xff]), Some(5));
        assert_eq!(der_length(&[0x30, 0x82, 0x03, 0xf4]), Some(1016));
        assert_eq!(der_length(&[0x31, 0x00]), None);
        assert_eq!(der_length(&[0xff; 8]), None);
    }
}
