//! Event types (TCG PC Client Platform Firmware Profile, "Events" table) and EFI GUIDs.

use std::fmt;
use std::str::FromStr;

/// `TCG_PCR_EVENT2.eventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(pub u32);

impl EventType {
    pub const PREBOOT_CERT: Self = Self(0x0000_0000);
    pub const POST_CODE: Self = Self(0x0000_0001);
    pub const NO_ACTION: Self = Self(0x0000_0003);
    pub const SEPARATOR: Self = Self(0x0000_0004);
    pub const ACTION: Self = Self(0x0000_0005);
    pub const EVENT_TAG: Self = Self(0x0000_0006);
    pub const S_CRTM_CONTENTS: Self = Self(0x0000_0007);
    pub const S_CRTM_VERSION: Self = Self(0x0000_0008);
    pub const CPU_MICROCODE: Self = Self(0x0000_0009);
    pub const PLATFORM_CONFIG_FLAGS: Self = Self(0x0000_000A);
    pub const TABLE_OF_DEVICES: Self = Self(0x0000_000B);
    pub const COMPACT_HASH: Self = Self(0x0000_000C);
    pub const IPL: Self = Self(0x0000_000D);
    pub const IPL_PARTITION_DATA: Self = Self(0x0000_000E);
    pub const NONHOST_CODE: Self = Self(0x0000_000F);
    pub const NONHOST_CONFIG: Self = Self(0x0000_0010);
    pub const NONHOST_INFO: Self = Self(0x0000_0011);
    pub const OMIT_BOOT_DEVICE_EVENTS: Self = Self(0x0000_0012);
    pub const EFI_VARIABLE_DRIVER_CONFIG: Self = Self(0x8000_0001);
    pub const EFI_VARIABLE_BOOT: Self = Self(0x8000_0002);
    pub const EFI_BOOT_SERVICES_APPLICATION: Self = Self(0x8000_0003);
    pub const EFI_BOOT_SERVICES_DRIVER: Self = Self(0x8000_0004);
    pub const EFI_RUNTIME_SERVICES_DRIVER: Self = Self(0x8000_0005);
    pub const EFI_GPT_EVENT: Self = Self(0x8000_0006);
    pub const EFI_ACTION: Self = Self(0x8000_0007);
    pub const EFI_PLATFORM_FIRMWARE_BLOB: Self = Self(0x8000_0008);
    pub const EFI_HANDOFF_TABLES: Self = Self(0x8000_0009);
    pub const EFI_PLATFORM_FIRMWARE_BLOB2: Self = Self(0x8000_000A);
    pub const EFI_HANDOFF_TABLES2: Self = Self(0x8000_000B);
    pub const EFI_VARIABLE_BOOT2: Self = Self(0x8000_000C);
    pub const EFI_HCRTM_EVENT: Self = Self(0x8000_0010);
    pub const EFI_VARIABLE_AUTHORITY: Self = Self(0x8000_00E0);

    const NAMES: [(EventType, &'static str); 32] = [
        (Self::PREBOOT_CERT, "EV_PREBOOT_CERT"),
        (Self::POST_CODE, "EV_POST_CODE"),
        (Self(0x0000_0002), "EV_UNUSED"),
        (Self::NO_ACTION, "EV_NO_ACTION"),
        (Self::SEPARATOR, "EV_SEPARATOR"),
        (Self::ACTION, "EV_ACTION"),
        (Self::EVENT_TAG, "EV_EVENT_TAG"),
        (Self::S_CRTM_CONTENTS, "EV_S_CRTM_CONTENTS"),
        (Self::S_CRTM_VERSION, "EV_S_CRTM_VERSION"),
        (Self::CPU_MICROCODE, "EV_CPU_MICROCODE"),
        (Self::PLATFORM_CONFIG_FLAGS, "EV_PLATFORM_CONFIG_FLAGS"),
        (Self::TABLE_OF_DEVICES, "EV_TABLE_OF_DEVICES"),
        (Self::COMPACT_HASH, "EV_COMPACT_HASH"),
        (Self::IPL, "EV_IPL"),
        (Self::IPL_PARTITION_DATA, "EV_IPL_PARTITION_DATA"),
        (Self::NONHOST_CODE, "EV_NONHOST_CODE"),
        (Self::NONHOST_CONFIG, "EV_NONHOST_CONFIG"),
        (Self::NONHOST_INFO, "EV_NONHOST_INFO"),
        (Self::OMIT_BOOT_DEVICE_EVENTS, "EV_OMIT_BOOT_DEVICE_EVENTS"),
        (
            Self::EFI_VARIABLE_DRIVER_CONFIG,
            "EV_EFI_VARIABLE_DRIVER_CONFIG",
        ),
        (Self::EFI_VARIABLE_BOOT, "EV_EFI_VARIABLE_BOOT"),
        (
            Self::EFI_BOOT_SERVICES_APPLICATION,
            "EV_EFI_BOOT_SERVICES_APPLICATION",
        ),
        (
            Self::EFI_BOOT_SERVICES_DRIVER,
            "EV_EFI_BOOT_SERVICES_DRIVER",
        ),
        (
            Self::EFI_RUNTIME_SERVICES_DRIVER,
            "EV_EFI_RUNTIME_SERVICES_DRIVER",
        ),
        (Self::EFI_GPT_EVENT, "EV_EFI_GPT_EVENT"),
        (Self::EFI_ACTION, "EV_EFI_ACTION"),
        (
            Self::EFI_PLATFORM_FIRMWARE_BLOB,
            "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        ),
        (Self::EFI_HANDOFF_TABLES, "EV_EFI_HANDOFF_TABLES"),
        (
            Self::EFI_PLATFORM_FIRMWARE_BLOB2,
            "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        ),
        (Self::EFI_HANDOFF_TABLES2, "EV_EFI_HANDOFF_TABLES2"),
        (Self::EFI_VARIABLE_BOOT2, "EV_EFI_VARIABLE_BOOT2"),
        (Self::EFI_HCRTM_EVENT, "EV_EFI_HCRTM_EVENT"),
    ];

    /// The spec's name (`EV_IPL`), or `None` for a type this module does not know.
    pub fn name(self) -> Option<&'static str> {
        if self == Self::EFI_VARIABLE_AUTHORITY {
            return Some("EV_EFI_VARIABLE_AUTHORITY");
        }
        Self::NAMES
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, n)| *n)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "event type 0x{:08x}", self.0),
        }
    }
}

/// An EFI_GUID as it is laid out in memory: `Data1` (u32), `Data2`, `Data3` (u16) little-endian,
/// then eight bytes. Displayed in the registry format efivar and tpm2-tools ≥ 5.2 print
/// (`8be4df61-93ca-11d2-aa0d-00e098032b8c`), which is what upstream refstates contain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// EFI_GLOBAL_VARIABLE: SecureBoot, PK, KEK, Boot####, BootOrder.
    pub const EFI_GLOBAL_VARIABLE: Guid = Guid::from_fields(
        0x8be4_df61,
        0x93ca,
        0x11d2,
        [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
    );
    /// EFI_IMAGE_SECURITY_DATABASE_GUID: db, dbx (and shim's vendor_db).
    pub const IMAGE_SECURITY_DATABASE: Guid = Guid::from_fields(
        0xd719_b2cb,
        0x3d3a,
        0x4596,
        [0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f],
    );
    /// EFI_CERT_X509_GUID: an EFI_SIGNATURE_LIST of DER certificates.
    pub const CERT_X509: Guid = Guid::from_fields(
        0xa5c0_59a1,
        0x94e4,
        0x4aa7,
        [0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72],
    );
    /// EFI_CERT_SHA256_GUID: an EFI_SIGNATURE_LIST of SHA-256 image digests.
    pub const CERT_SHA256: Guid = Guid::from_fields(
        0xc1c4_1626,
        0x504c,
        0x4092,
        [0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28],
    );
    /// shim's SHIM_LOCK_GUID: MokList, MokListX, SbatLevel.
    pub const SHIM_LOCK: Guid = Guid::from_fields(
        0x605d_ab50,
        0xe046,
        0x4300,
        [0xab, 0xb6, 0x3d, 0xd8, 0x10, 0xdd, 0x8b, 0x23],
    );

    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9],
            hex::encode(&b[10..])
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// The registry format, hex digits in either case.
impl FromStr for Guid {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a GUID of the form 8be4df61-93ca-11d2-aa0d-00e098032b8c");
        let parts: Vec<&str> = s.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        if parts.len() != 5
            || parts
                .iter()
                .zip(lens)
                .any(|(p, l)| p.len() != l || !p.bytes().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(bad());
        }
        let d1 = u32::from_str_radix(parts[0], 16).map_err(|_| bad())?;
        let d2 = u16::from_str_radix(parts[1], 16).map_err(|_| bad())?;
        let d3 = u16::from_str_radix(parts[2], 16).map_err(|_| bad())?;
        let tail = hex::decode(format!("{}{}", parts[3], parts[4])).map_err(|_| bad())?;
        let mut d4 = [0u8; 8];
        d4.copy_from_slice(&tail);
        Ok(Guid::from_fields(d1, d2, d3, d4))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn guid_round_trips_in_registry_format() {
        let s = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
        let g: Guid = s.parse().unwrap();
        assert_eq!(g, Guid::EFI_GLOBAL_VARIABLE);
        assert_eq!(g.to_string(), s);
        // Data1..Data3 little-endian in memory, the rest as written.
        assert_eq!(hex::encode(g.0), "61dfe48bca93d211aa0d00e098032b8c");
        assert_eq!(
            "8BE4DF61-93CA-11D2-AA0D-00E098032B8C"
                .parse::<Guid>()
                .unwrap(),
            g
        );
        for bad in [
            "",
            "8be4df61-93ca-11d2-aa0d",
            "8be4df6193ca11d2aa0d00e098032b8c",
            "8be4df61-93ca-11d2-aa0d-00e098032b8g",
        ] {
            assert!(bad.parse::<Guid>().is_err(), "{bad}");
        }
    }

    #[test]
    fn event_type_names() {
        assert_eq!(EventType::IPL.to_string(), "EV_IPL");
        assert_eq!(
            EventType::EFI_VARIABLE_AUTHORITY.to_string(),
            "EV_EFI_VARIABLE_AUTHORITY"
        );
        assert_eq!(EventType(0x1234).to_string(), "event type 0x00001234");
    }
}
