//! Event data of the event types a measured-boot policy reads (PC Client PFP "Event Data"
//! structures). Everything else stays raw in [`super::Event::data`]; the key databases inside
//! PK/KEK/db/dbx variables are parsed by [`super::siglist`].
//!
//! Decoding is strict for the fixed structures (a UEFI_VARIABLE_DATA whose lengths do not add
//! up to `eventSize` fails the whole log); free-text fields (S-CRTM version, EV_IPL, EV_POST_CODE
//! strings) are decoded lossily because firmware and boot loaders disagree on their encoding.

use super::parse::MAX_EVENT_DATA;
use super::reader::LeReader;
use super::types::{EventType, Guid};
use crate::tpm::wire::{WireError, WireReason};

const STARTUP_LOCALITY: &[u8; 16] = b"StartupLocality\0";

/// Decoded event data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    /// EV_NO_ACTION "StartupLocality": PCR 0 starts at this locality instead of 0.
    StartupLocality(u8),
    /// EV_S_CRTM_VERSION, EV_POST_CODE (string form), EV_EFI_ACTION, EV_ACTION, EV_IPL,
    /// EV_EFI_HCRTM_EVENT: text with trailing NULs removed.
    Text(String),
    /// EV_EFI_PLATFORM_FIRMWARE_BLOB(2), EV_S_CRTM_CONTENTS, 16-byte EV_POST_CODE.
    FirmwareBlob(FirmwareBlob),
    /// EV_EFI_VARIABLE_DRIVER_CONFIG, _BOOT, _BOOT2, _AUTHORITY.
    Variable(UefiVariable),
    /// EV_EFI_BOOT_SERVICES_APPLICATION, _DRIVER, EV_EFI_RUNTIME_SERVICES_DRIVER.
    ImageLoad(ImageLoad),
    /// EV_SEPARATOR: 0 normally, 0xFFFFFFFF when firmware signals an error.
    Separator(u32),
    /// Anything else: see `data`.
    Raw,
}

/// UEFI_PLATFORM_FIRMWARE_BLOB / UEFI_PLATFORM_FIRMWARE_BLOB2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareBlob {
    /// Only in the BLOB2 form.
    pub description: Option<Vec<u8>>,
    pub base: u64,
    pub length: u64,
}

/// UEFI_VARIABLE_DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UefiVariable {
    pub guid: Guid,
    pub name: String,
    pub data: Vec<u8>,
}

/// UEFI_IMAGE_LOAD_EVENT. The device path is kept raw (efivar's text form is not needed by any
/// check Vouch makes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLoad {
    pub location: u64,
    pub length: u64,
    pub link_time_address: u64,
    pub device_path: Vec<u8>,
}

impl ImageLoad {
    /// The text of the last media file-path node (type 4, subtype 4) of the device path, e.g.
    /// `\EFI\debian\shimx64.efi`, for messages. `None` if there is none or the path is
    /// malformed.
    pub fn file_path(&self) -> Option<String> {
        let mut dp = self.device_path.as_slice();
        let mut found = None;
        while dp.len() >= 4 {
            let (ty, sub) = (dp[0], dp[1]);
            let len = usize::from(u16::from_le_bytes([dp[2], dp[3]]));
            if len < 4 || len > dp.len() {
                return None;
            }
            if ty == 0x7f {
                break;
            }
            if ty == 4 && sub == 4 {
                let units: Vec<u16> = dp[4..len]
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                found = Some(
                    String::from_utf16_lossy(&units)
                        .trim_end_matches('\0')
                        .to_string(),
                );
            }
            dp = &dp[len..];
        }
        found
    }
}

pub(crate) fn decode(
    ty: EventType,
    pcr: u8,
    data: &[u8],
    base: usize,
) -> Result<EventBody, WireError> {
    let mut r = LeReader::at(data, base);
    let body = match ty {
        EventType::NO_ACTION => {
            if pcr == 0 && data.len() == 17 && data.starts_with(STARTUP_LOCALITY) {
                EventBody::StartupLocality(data[16])
            } else {
                EventBody::Raw
            }
        }
        EventType::S_CRTM_VERSION => EventBody::Text(maybe_utf16(data)),
        EventType::POST_CODE if data.len() == 16 => EventBody::FirmwareBlob(blob(&mut r, false)?),
        EventType::POST_CODE | EventType::EFI_ACTION | EventType::ACTION | EventType::IPL => {
            EventBody::Text(text(data))
        }
        EventType::EFI_HCRTM_EVENT => {
            if data != b"HCRTM" {
                return Err(r.error_at(
                    base,
                    "EV_EFI_HCRTM_EVENT.event",
                    WireReason::Invalid("must be the string \"HCRTM\"".into()),
                ));
            }
            EventBody::Text("HCRTM".into())
        }
        EventType::S_CRTM_CONTENTS | EventType::EFI_PLATFORM_FIRMWARE_BLOB => {
            EventBody::FirmwareBlob(blob(&mut r, false)?)
        }
        EventType::EFI_PLATFORM_FIRMWARE_BLOB2 => EventBody::FirmwareBlob(blob(&mut r, true)?),
        EventType::EFI_VARIABLE_DRIVER_CONFIG
        | EventType::EFI_VARIABLE_BOOT
        | EventType::EFI_VARIABLE_BOOT2
        | EventType::EFI_VARIABLE_AUTHORITY => EventBody::Variable(variable(&mut r)?),
        EventType::EFI_BOOT_SERVICES_APPLICATION
        | EventType::EFI_BOOT_SERVICES_DRIVER
        | EventType::EFI_RUNTIME_SERVICES_DRIVER => EventBody::ImageLoad(image_load(&mut r)?),
        EventType::SEPARATOR => {
            let v = r.u32("EV_SEPARATOR.event")?;
            r.finish("EV_SEPARATOR.event")?;
            EventBody::Separator(v)
        }
        _ => EventBody::Raw,
    };
    Ok(body)
}

fn blob(r: &mut LeReader<'_>, with_description: bool) -> Result<FirmwareBlob, WireError> {
    let what = if with_description {
        "UEFI_PLATFORM_FIRMWARE_BLOB2"
    } else {
        "UEFI_PLATFORM_FIRMWARE_BLOB"
    };
    let description = if with_description {
        let n = r.u8(&format!("{what}.BlobDescriptionSize"))?;
        Some(
            r.bytes(n.into(), &format!("{what}.BlobDescription"))?
                .to_vec(),
        )
    } else {
        None
    };
    let base = r.u64(&format!("{what}.BlobBase"))?;
    let length = r.u64(&format!("{what}.BlobLength"))?;
    r.finish(what)?;
    Ok(FirmwareBlob {
        description,
        base,
        length,
    })
}

fn variable(r: &mut LeReader<'_>) -> Result<UefiVariable, WireError> {
    let guid = Guid(r.array("UEFI_VARIABLE_DATA.VariableName")?);
    let name_bytes = r.len_u64("UEFI_VARIABLE_DATA.UnicodeNameLength", 2, MAX_EVENT_DATA)?;
    let data_len = r.len_u64("UEFI_VARIABLE_DATA.VariableDataLength", 1, MAX_EVENT_DATA)?;
    let at = r.offset();
    let raw = r.bytes(name_bytes, "UEFI_VARIABLE_DATA.UnicodeName")?;
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let name = String::from_utf16(&units).map_err(|_| {
        r.error_at(
            at,
            "UEFI_VARIABLE_DATA.UnicodeName",
            WireReason::Invalid("is not valid UTF-16".into()),
        )
    })?;
    let data = r
        .bytes(data_len, "UEFI_VARIABLE_DATA.VariableData")?
        .to_vec();
    r.finish("UEFI_VARIABLE_DATA")?;
    Ok(UefiVariable { guid, name, data })
}

fn image_load(r: &mut LeReader<'_>) -> Result<ImageLoad, WireError> {
    let location = r.u64("UEFI_IMAGE_LOAD_EVENT.ImageLocationInMemory")?;
    let length = r.u64("UEFI_IMAGE_LOAD_EVENT.ImageLengthInMemory")?;
    let link_time_address = r.u64("UEFI_IMAGE_LOAD_EVENT.ImageLinkTimeAddress")?;
    let n = r.len_u64(
        "UEFI_IMAGE_LOAD_EVENT.LengthOfDevicePath",
        1,
        MAX_EVENT_DATA,
    )?;
    let device_path = r.bytes(n, "UEFI_IMAGE_LOAD_EVENT.DevicePath")?.to_vec();
    r.finish("UEFI_IMAGE_LOAD_EVENT")?;
    Ok(ImageLoad {
        location,
        length,
        link_time_address,
        device_path,
    })
}

/// Text with trailing NULs dropped, invalid UTF-8 replaced.
fn text(data: &[u8]) -> String {
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// S-CRTM versions are usually UTF-16LE (edk2, most vendors) but some are ASCII.
fn maybe_utf16(data: &[u8]) -> String {
    let looks_utf16 = data.len() >= 2 && data.len() & 1 == 0 && data[1] == 0;
    if !looks_utf16 {
        return text(data);
    }
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let s: String = char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    s.trim_end_matches('\0').to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn var_bytes(name: &str, data: &[u8]) -> Vec<u8> {
        let mut v = Guid::EFI_GLOBAL_VARIABLE.0.to_vec();
        let units: Vec<u16> = name.encode_utf16().collect();
        v.extend((units.len() as u64).to_le_bytes());
        v.extend((data.len() as u64).to_le_bytes());
        for u in units {
            v.extend(u.to_le_bytes());
        }
        v.extend(data);
        v
    }

    #[test]
    fn decodes_a_variable() {
        let b = var_bytes("SecureBoot", &[1]);
        match decode(EventType::EFI_VARIABLE_DRIVER_CONFIG, 7, &b, 0).unwrap() {
            EventBody::Variable(v) => {
                assert_eq!(
                    (v.guid, v.name.as_str(), v.data.as_slice()),
                    (Guid::EFI_GLOBAL_VARIABLE, "SecureBoot", &[1u8][..])
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn variable_lengths_must_add_up() {
        let mut b = var_bytes("PK", &[1, 2, 3]);
        b.push(0);
        let e = decode(EventType::EFI_VARIABLE_DRIVER_CONFIG, 7, &b, 1000).unwrap_err();
        assert_eq!(
            (e.what.as_str(), e.offset),
            ("UEFI_VARIABLE_DATA", 1000 + b.len() - 1)
        );
        assert_eq!(e.reason, WireReason::Trailing(1));
        let b = var_bytes("PK", &[1, 2, 3]);
        let e = decode(
            EventType::EFI_VARIABLE_DRIVER_CONFIG,
            7,
            &b[..b.len() - 1],
            0,
        )
        .unwrap_err();
        assert_eq!(e.what, "UEFI_VARIABLE_DATA.VariableData");
        assert!(matches!(
            e.reason,
            WireReason::Truncated {
                needed: 3,
                available: 2
            }
        ));
        let mut b = var_bytes("PK", &[]);
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = decode(EventType::EFI_VARIABLE_BOOT, 1, &b, 0).unwrap_err();
        assert_eq!(
            (e.what.as_str(), e.offset),
            ("UEFI_VARIABLE_DATA.UnicodeNameLength", 16)
        );
        let mut b = var_bytes("P", &[]);
        b[32..34].copy_from_slice(&0xd800u16.to_le_bytes());
        let e = decode(EventType::EFI_VARIABLE_BOOT, 1, &b, 0).unwrap_err();
        assert_eq!(
            (e.what.as_str(), e.offset),
            ("UEFI_VARIABLE_DATA.UnicodeName", 32)
        );
    }

    #[test]
    fn fixed_structures_are_exact() {
        let e = decode(EventType::SEPARATOR, 0, &[0, 0, 0, 0, 0], 50).unwrap_err();
        assert_eq!(
            (e.what.as_str(), e.offset, e.reason),
            ("EV_SEPARATOR.event", 54, WireReason::Trailing(1))
        );
        let e = decode(EventType::EFI_PLATFORM_FIRMWARE_BLOB, 0, &[0; 15], 0).unwrap_err();
        assert_eq!(e.what, "UEFI_PLATFORM_FIRMWARE_BLOB.BlobLength");
        let e = decode(EventType::EFI_BOOT_SERVICES_APPLICATION, 4, &[0; 31], 0).unwrap_err();
        assert_eq!(e.what, "UEFI_IMAGE_LOAD_EVENT.LengthOfDevicePath");
        let e = decode(EventType::EFI_HCRTM_EVENT, 0, b"HCRT", 0).unwrap_err();
        assert_eq!(e.what, "EV_EFI_HCRTM_EVENT.event");
        let mut b2 = vec![3u8, b'a', b'b', b'c'];
        b2.extend([0u8; 16]);
        match decode(EventType::EFI_PLATFORM_FIRMWARE_BLOB2, 0, &b2, 0).unwrap() {
            EventBody::FirmwareBlob(b) => assert_eq!(b.description.as_deref(), Some(&b"abc"[..])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_forms() {
        let v: Vec<u8> = "1.0\0".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(
            decode(EventType::S_CRTM_VERSION, 0, &v, 0).unwrap(),
            EventBody::Text("1.0".into())
        );
        assert_eq!(
            decode(EventType::S_CRTM_VERSION, 0, b"v2", 0).unwrap(),
            EventBody::Text("v2".into())
        );
        assert_eq!(
            decode(EventType::IPL, 8, b"kernel_cmdline: ro\0", 0).unwrap(),
            EventBody::Text("kernel_cmdline: ro".into())
        );
        let mut loc = STARTUP_LOCALITY.to_vec();
        loc.push(3);
        assert_eq!(
            decode(EventType::NO_ACTION, 0, &loc, 0).unwrap(),
            EventBody::StartupLocality(3)
        );
        assert_eq!(
            decode(EventType::NO_ACTION, 1, &loc, 0).unwrap(),
            EventBody::Raw
        );
    }
}
