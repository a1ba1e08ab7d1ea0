//! A typical shim + grub + Linux UEFI boot as a fixture: the log it produces and the upstream
//! refstate (`keylime-policy create measured-boot` format) that accepts it.
//!
//! Tests change one field (a kernel image, the SecureBoot state, a dbx entry) and check that
//! the policy notices.

use super::build::{load_option, LogBuilder};
use super::siglist::{SignatureData, SignatureList};
use super::types::{EventType, Guid};
use crate::tpm::alg::HashAlg;
use serde_json::{json, Value};

/// Owner GUID of the sample's keys (any GUID will do; this one is Microsoft's, which appears
/// in most real db/dbx variables).
pub const SAMPLE_OWNER: Guid = Guid::from_fields(
    0x77fa_9abd,
    0x0359,
    0x4d32,
    [0xbd, 0x60, 0x28, 0xf4, 0xe7, 0x8f, 0x78, 0x4b],
);

/// Everything the sample boot measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleBoot {
    pub secure_boot: bool,
    pub scrtm_version: String,
    /// Firmware volumes measured as EV_EFI_PLATFORM_FIRMWARE_BLOB.
    pub firmware: Vec<Vec<u8>>,
    /// X.509 certificates (any bytes do for the fixtures) of PK, KEK and db.
    pub pk: Vec<Vec<u8>>,
    pub kek: Vec<Vec<u8>>,
    pub db: Vec<Vec<u8>>,
    /// SHA-256 digests of revoked images.
    pub dbx: Vec<[u8; 32]>,
    pub moklist: Vec<u8>,
    pub shim: Vec<u8>,
    pub grub: Vec<u8>,
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
    pub cmdline: String,
}

impl Default for SampleBoot {
    fn default() -> Self {
        let cert = |name: &str| {
            let mut c = vec![0x30, 0x82, 0x01, 0x00];
            c.extend(name.as_bytes());
            c
        };
        Self {
            secure_boot: true,
            scrtm_version: "edk2-stable202302".into(),
            firmware: vec![
                b"PEI firmware volume".to_vec(),
                b"DXE firmware volume".to_vec(),
            ],
            pk: vec![cert("vouch sample PK")],
            kek: vec![cert("vouch sample KEK")],
            db: vec![cert("vouch sample db CA"), cert("vouch sample UEFI CA")],
            dbx: vec![[0xdb; 32], [0x0b; 32]],
            moklist: b"MokList contents".to_vec(),
            shim: b"shimx64.efi 15.8".to_vec(),
            grub: b"grubx64.efi 2.06".to_vec(),
            kernel: b"vmlinuz-6.1.0".to_vec(),
            initrd: b"initrd.img-6.1.0".to_vec(),
            cmdline: "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.1.0 root=UUID=1234 ro quiet".into(),
        }
    }
}

fn x509_list(certs: &[Vec<u8>]) -> Vec<SignatureList> {
    certs
        .iter()
        .map(|c| SignatureList {
            signature_type: Guid::CERT_X509,
            header: vec![],
            signatures: vec![SignatureData {
                owner: SAMPLE_OWNER,
                data: c.clone(),
            }],
        })
        .collect()
}

impl SampleBoot {
    pub fn pk_lists(&self) -> Vec<SignatureList> {
        x509_list(&self.pk)
    }

    pub fn kek_lists(&self) -> Vec<SignatureList> {
        x509_list(&self.kek)
    }

    pub fn db_lists(&self) -> Vec<SignatureList> {
        x509_list(&self.db)
    }

    pub fn dbx_lists(&self) -> Vec<SignatureList> {
        vec![SignatureList {
            signature_type: Guid::CERT_SHA256,
            header: vec![],
            signatures: self
                .dbx
                .iter()
                .map(|d| SignatureData {
                    owner: SAMPLE_OWNER,
                    data: d.to_vec(),
                })
                .collect(),
        }]
    }

    /// The boot as edk2, shim and grub log it. With secure boot off, grub loads the kernel
    /// itself, so there is no third EV_EFI_BOOT_SERVICES_APPLICATION.
    pub fn log(&self, banks: &[HashAlg]) -> LogBuilder {
        let mut b = LogBuilder::new(banks);
        b.s_crtm_version(&self.scrtm_version);
        for (i, fv) in self.firmware.iter().enumerate() {
            b.firmware_blob(0xffc0_0000 + 0x10_0000 * i as u64, fv);
        }
        b.secure_boot(self.secure_boot)
            .key_database("PK", &self.pk_lists())
            .key_database("KEK", &self.kek_lists())
            .key_database("db", &self.db_lists())
            .key_database("dbx", &self.dbx_lists());
        let g = Guid::EFI_GLOBAL_VARIABLE;
        b.variable(1, EventType::EFI_VARIABLE_BOOT, g, "BootOrder", &[1, 0])
            .variable(
                1,
                EventType::EFI_VARIABLE_BOOT,
                g,
                "Boot0001",
                &load_option("debian", "\\EFI\\debian\\shimx64.efi"),
            )
            .efi_action(4, "Calling EFI Application from Boot Option")
            .separators(0..=7)
            .boot_application("\\EFI\\debian\\shimx64.efi", &self.shim)
            .ipl(14, "MokList", &self.moklist)
            .boot_application("\\EFI\\debian\\grubx64.efi", &self.grub)
            .ipl(
                8,
                "grub_cmd: linux /vmlinuz-6.1.0 root=UUID=1234 ro quiet",
                b"linux /vmlinuz-6.1.0 root=UUID=1234 ro quiet",
            )
            .ipl(9, "/boot/vmlinuz-6.1.0", &self.kernel);
        if self.secure_boot {
            b.boot_application("/boot/vmlinuz-6.1.0", &self.kernel);
        }
        let cmdline = format!("kernel_cmdline: {}", self.cmdline);
        b.ipl(8, &cmdline, self.cmdline.as_bytes())
            .ipl(9, "/boot/initrd.img-6.1.0", &self.initrd)
            .efi_action(5, "Exit Boot Services Invocation")
            .efi_action(5, "Exit Boot Services Returned with Success");
        b
    }

    /// The refstate upstream's `create_mb_policy` writes for this boot.
    pub fn refstate(&self) -> Value {
        let sha = |d: &[u8]| format!("0x{}", hex::encode(HashAlg::Sha256.digest(d)));
        let keys = |lists: Vec<SignatureList>| -> Vec<Value> {
            lists
                .iter()
                .flat_map(|l| &l.signatures)
                .map(|s| {
                    json!({
                        "SignatureOwner": s.owner.to_string(),
                        "SignatureData": format!("0x{}", hex::encode(&s.data)),
                    })
                })
                .collect()
        };
        let mut kernel = json!({
            "shim_authcode_sha256": sha(&self.shim),
            "grub_authcode_sha256": sha(&self.grub),
            "initrd_plain_sha256": sha(&self.initrd),
            "kernel_cmdline": regex::escape(&self.cmdline),
        });
        let key = if self.secure_boot {
            "kernel_authcode_sha256"
        } else {
            "vmlinuz_plain_sha256"
        };
        kernel[key] = json!(sha(&self.kernel));
        json!({
            "has_secureboot": self.secure_boot,
            "scrtm_and_bios": [{
                "scrtm": {"sha256": sha(&super::build::utf16z(&self.scrtm_version))},
                "platform_firmware": self.firmware.iter().map(|f| json!({"sha256": sha(f)})).collect::<Vec<_>>(),
            }],
            "pk": keys(self.pk_lists()),
            "kek": keys(self.kek_lists()),
            "db": keys(self.db_lists()),
            "dbx": keys(self.dbx_lists()),
            "vendor_db": [],
            "mokdig": [{"sha256": sha(&self.moklist)}],
            "mokxdig": [],
            "kernels": [kernel],
        })
    }
}
