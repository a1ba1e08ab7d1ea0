//! Building well-formed crypto-agile event logs for tests, with the PCR values they replay to.
//!
//! The expected values are computed here, independently of [`super::replay`], so a test that
//! compares the two checks both. [`BuiltLog::extends`] lists the PCR_Extend operations in log
//! order, so a test can drive a real TPM (`tpm2_pcrextend`) into the state the log describes.

use super::siglist::{encode_signature_lists, SignatureList};
use super::types::{EventType, Guid};
use crate::tpm::alg::HashAlg;
use crate::tpm::pcr::PcrValues;
use base64::Engine;
use std::collections::BTreeMap;

/// One PCR_Extend: the digest per bank that an event adds to `pcr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extend {
    pub pcr: u8,
    pub digests: Vec<(HashAlg, Vec<u8>)>,
}

/// A finished log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltLog {
    pub bytes: Vec<u8>,
    /// Events including the Spec ID event (tpm2_eventlog's count).
    pub event_count: usize,
    /// Every PCR some event extended, in every bank.
    pub pcrs: PcrValues,
    /// The extends in log order (EV_NO_ACTION events excluded).
    pub extends: Vec<Extend>,
}

impl BuiltLog {
    /// What the agent sends as `mb_measurement_list`.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }
}

/// Appends events to a log; every method returns `&mut Self` for chaining.
#[derive(Debug, Clone)]
pub struct LogBuilder {
    banks: Vec<HashAlg>,
    records: Vec<u8>,
    count: usize,
    extends: Vec<Extend>,
    pcrs: BTreeMap<(HashAlg, u8), Vec<u8>>,
}

impl LogBuilder {
    /// A log whose Spec ID event lists `banks` in this order (an empty list means sha256).
    pub fn new(banks: &[HashAlg]) -> Self {
        let banks = if banks.is_empty() {
            vec![HashAlg::Sha256]
        } else {
            banks.to_vec()
        };
        Self {
            banks,
            records: Vec::new(),
            count: 0,
            extends: Vec::new(),
            pcrs: BTreeMap::new(),
        }
    }

    pub fn banks(&self) -> &[HashAlg] {
        &self.banks
    }

    /// An event with explicit digests, written exactly as given (banks missing from
    /// `digests` get zeros): the way to make a log that lies.
    pub fn raw_event(
        &mut self,
        pcr: u8,
        ty: EventType,
        data: &[u8],
        digests: &[(HashAlg, Vec<u8>)],
    ) -> &mut Self {
        let mut per_bank = Vec::with_capacity(self.banks.len());
        self.records.extend(u32::from(pcr).to_le_bytes());
        self.records.extend(ty.0.to_le_bytes());
        self.records.extend(len32(self.banks.len()).to_le_bytes());
        for &h in &self.banks {
            let d = digests
                .iter()
                .find(|(a, _)| *a == h)
                .map(|(_, d)| d.clone())
                .unwrap_or_else(|| vec![0; h.digest_len()]);
            self.records.extend(h.id().to_le_bytes());
            self.records.extend(&d);
            per_bank.push((h, d));
        }
        self.records.extend(len32(data.len()).to_le_bytes());
        self.records.extend(data);
        self.count += 1;
        if ty != EventType::NO_ACTION {
            for (h, d) in &per_bank {
                let old = self
                    .pcrs
                    .remove(&(*h, pcr))
                    .unwrap_or_else(|| vec![0; h.digest_len()]);
                self.pcrs.insert((*h, pcr), h.digest_parts(&[&old, d]));
            }
            self.extends.push(Extend {
                pcr,
                digests: per_bank,
            });
        }
        self
    }

    /// An event whose digests are the hash of `measured` in every bank.
    pub fn measured(&mut self, pcr: u8, ty: EventType, data: &[u8], measured: &[u8]) -> &mut Self {
        let digests: Vec<_> = self
            .banks
            .iter()
            .map(|&h| (h, h.digest(measured)))
            .collect();
        self.raw_event(pcr, ty, data, &digests)
    }

    /// An event whose digests are the hash of its own data.
    pub fn event(&mut self, pcr: u8, ty: EventType, data: &[u8]) -> &mut Self {
        self.measured(pcr, ty, data, data)
    }

    /// EV_S_CRTM_VERSION in PCR 0: the version as NUL-terminated UTF-16LE, as edk2 writes it.
    pub fn s_crtm_version(&mut self, version: &str) -> &mut Self {
        self.event(0, EventType::S_CRTM_VERSION, &utf16z(version))
    }

    /// EV_POST_CODE in PCR 0 with a string description of the measured `code`.
    pub fn post_code(&mut self, description: &str, code: &[u8]) -> &mut Self {
        self.measured(0, EventType::POST_CODE, description.as_bytes(), code)
    }

    /// EV_EFI_PLATFORM_FIRMWARE_BLOB in PCR 0: a firmware volume at `base` holding `contents`.
    pub fn firmware_blob(&mut self, base: u64, contents: &[u8]) -> &mut Self {
        let mut data = base.to_le_bytes().to_vec();
        data.extend((contents.len() as u64).to_le_bytes());
        self.measured(0, EventType::EFI_PLATFORM_FIRMWARE_BLOB, &data, contents)
    }

    /// A UEFI_VARIABLE_DATA event. The digest covers the whole structure, except for
    /// EV_EFI_VARIABLE_BOOT where (as edk2 does) it covers only the variable's data.
    pub fn variable(
        &mut self,
        pcr: u8,
        ty: EventType,
        guid: Guid,
        name: &str,
        value: &[u8],
    ) -> &mut Self {
        let data = variable_data(guid, name, value);
        if ty == EventType::EFI_VARIABLE_BOOT {
            self.measured(pcr, ty, &data, value)
        } else {
            self.event(pcr, ty, &data)
        }
    }

    /// The SecureBoot variable in PCR 7 (1 enabled, 0 disabled).
    pub fn secure_boot(&mut self, enabled: bool) -> &mut Self {
        self.variable(
            7,
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            Guid::EFI_GLOBAL_VARIABLE,
            "SecureBoot",
            &[u8::from(enabled)],
        )
    }

    /// PK, KEK (EFI global variables), db or dbx (image security database) in PCR 7.
    pub fn key_database(&mut self, name: &str, lists: &[SignatureList]) -> &mut Self {
        let guid = if name == "PK" || name == "KEK" {
            Guid::EFI_GLOBAL_VARIABLE
        } else {
            Guid::IMAGE_SECURITY_DATABASE
        };
        self.variable(
            7,
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            guid,
            name,
            &encode_signature_lists(lists),
        )
    }

    /// EV_SEPARATOR (value 0) in each of `pcrs`.
    pub fn separators(&mut self, pcrs: impl IntoIterator<Item = u8>) -> &mut Self {
        for p in pcrs {
            self.event(p, EventType::SEPARATOR, &[0, 0, 0, 0]);
        }
        self
    }

    /// EV_EFI_ACTION: the ASCII string, digest of the string.
    pub fn efi_action(&mut self, pcr: u8, action: &str) -> &mut Self {
        self.event(pcr, EventType::EFI_ACTION, action.as_bytes())
    }

    /// EV_EFI_BOOT_SERVICES_APPLICATION in PCR 4 for an image loaded from `path` (a file-path
    /// device path). The digest stands for the image's Authenticode hash: it is `hash(image)`.
    pub fn boot_application(&mut self, path: &str, image: &[u8]) -> &mut Self {
        let dp = file_device_path(path);
        let mut data = Vec::with_capacity(32 + dp.len());
        data.extend(0x7f00_0000u64.to_le_bytes());
        data.extend((image.len() as u64).to_le_bytes());
        data.extend(0u64.to_le_bytes());
        data.extend((dp.len() as u64).to_le_bytes());
        data.extend(&dp);
        self.measured(4, EventType::EFI_BOOT_SERVICES_APPLICATION, &data, image)
    }

    /// EV_IPL as shim and grub write it: `description` NUL-terminated, digest of `measured`.
    pub fn ipl(&mut self, pcr: u8, description: &str, measured: &[u8]) -> &mut Self {
        let mut data = description.as_bytes().to_vec();
        data.push(0);
        self.measured(pcr, EventType::IPL, &data, measured)
    }

    /// EV_NO_ACTION "StartupLocality": PCR 0 was reset at `locality`.
    pub fn startup_locality(&mut self, locality: u8) -> &mut Self {
        let mut data = b"StartupLocality\0".to_vec();
        data.push(locality);
        let zeros: Vec<_> = self
            .banks
            .iter()
            .map(|&h| (h, vec![0; h.digest_len()]))
            .collect();
        for &h in &self.banks {
            self.pcrs.entry((h, 0)).or_insert_with(|| {
                let mut v = vec![0u8; h.digest_len()];
                if let Some(b) = v.last_mut() {
                    *b = locality;
                }
                v
            });
        }
        self.raw_event(0, EventType::NO_ACTION, &data, &zeros)
    }

    pub fn build(&self) -> BuiltLog {
        let mut spec = b"Spec ID Event03\0".to_vec();
        spec.extend(0u32.to_le_bytes()); // platformClass: client
        spec.extend([0, 2, 0, 2]); // version 2.0, errata 0, UINTN 64-bit
        spec.extend(len32(self.banks.len()).to_le_bytes());
        for h in &self.banks {
            spec.extend(h.id().to_le_bytes());
            spec.extend(u16::try_from(h.digest_len()).unwrap_or(0).to_le_bytes());
        }
        spec.push(0); // vendorInfoSize
        let mut bytes = Vec::with_capacity(32 + spec.len() + self.records.len());
        bytes.extend(0u32.to_le_bytes());
        bytes.extend(EventType::NO_ACTION.0.to_le_bytes());
        bytes.extend([0u8; 20]);
        bytes.extend(len32(spec.len()).to_le_bytes());
        bytes.extend(&spec);
        bytes.extend(&self.records);
        let mut pcrs = PcrValues::new();
        for ((h, i), v) in &self.pcrs {
            if self.extends.iter().any(|e| e.pcr == *i) {
                // Lengths come from `h`: insert cannot fail.
                let _ = pcrs.insert(*h, *i, v.clone());
            }
        }
        BuiltLog {
            bytes,
            event_count: self.count + 1,
            pcrs,
            extends: self.extends.clone(),
        }
    }
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// NUL-terminated UTF-16LE.
pub fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// UEFI_VARIABLE_DATA for `guid`/`name` holding `value`.
pub fn variable_data(guid: Guid, name: &str, value: &[u8]) -> Vec<u8> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let mut data = guid.as_bytes().to_vec();
    data.extend((units.len() as u64).to_le_bytes());
    data.extend((value.len() as u64).to_le_bytes());
    data.extend(units.iter().flat_map(|u| u.to_le_bytes()));
    data.extend(value);
    data
}

/// A device path of one media file-path node (type 4, subtype 4) and the end node.
pub fn file_device_path(path: &str) -> Vec<u8> {
    let name = utf16z(path);
    let mut dp = vec![0x04, 0x04];
    dp.extend(
        u16::try_from(4 + name.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    dp.extend(name);
    dp.extend([0x7f, 0xff, 0x04, 0x00]);
    dp
}

/// EFI_LOAD_OPTION of an active Boot#### entry.
pub fn load_option(description: &str, path: &str) -> Vec<u8> {
    let dp = file_device_path(path);
    let mut v = 1u32.to_le_bytes().to_vec();
    v.extend(u16::try_from(dp.len()).unwrap_or(u16::MAX).to_le_bytes());
    v.extend(utf16z(description));
    v.extend(dp);
    v
}
