//! Manufacturer, model, serial number and BIOS: parsed from the raw SMBIOS table on Windows
//! (`GetSystemFirmwareTable('RSMB')`, what WMI's Win32_BIOS / Win32_ComputerSystem read
//! themselves, without COM), from `/sys/class/dmi/id` on Linux. The parser is pure and tested
//! on a hand-built table.

use kanade_shared::wire::Hardware;

/// Parse SMBIOS structures: type 0 (BIOS: version, release date) and type 1 (system:
/// manufacturer, product, serial number). `table` is the structure table itself (after the
/// 8-byte `RawSMBIOSData` header Windows puts in front). Anything malformed ends the walk with
/// what was read so far.
pub fn parse_smbios(table: &[u8]) -> Hardware {
    let mut hw = Hardware::default();
    let mut at = 0;
    while at + 4 <= table.len() {
        let kind = table[at];
        let len = usize::from(table[at + 1]);
        if len < 4 || at + len > table.len() {
            break;
        }
        let formatted = &table[at..at + len];
        // The strings follow, each NUL-terminated, the set ended by an extra NUL.
        let mut end = at + len;
        while end + 1 < table.len() && !(table[end] == 0 && table[end + 1] == 0) {
            end += 1;
        }
        let strings: Vec<String> = table[at + len..end.min(table.len())]
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).trim().to_owned())
            .collect();
        let text = |offset: usize| -> String {
            let index = formatted.get(offset).copied().unwrap_or(0) as usize;
            if index == 0 { String::new() } else { strings.get(index - 1).cloned().unwrap_or_default() }
        };
        match kind {
            0 => {
                hw.bios_version = text(0x05);
                hw.bios_date = text(0x08);
            }
            1 => {
                hw.manufacturer = text(0x04);
                hw.model = text(0x05);
                hw.serial_number = text(0x07);
            }
            127 => break,
            _ => {}
        }
        at = end + 2;
    }
    hw
}

/// The one call into Windows here; everything it returns goes through the safe parser.
#[cfg(windows)]
#[allow(unsafe_code)]
pub fn collect() -> Hardware {
    use windows_sys::Win32::System::SystemInformation::GetSystemFirmwareTable;
    const RSMB: u32 = u32::from_be_bytes(*b"RSMB");
    // SAFETY: a null buffer of size 0 asks for the size; the second call writes at most
    // `size` bytes into a buffer of that size.
    let size = unsafe { GetSystemFirmwareTable(RSMB, 0, std::ptr::null_mut(), 0) };
    if size == 0 {
        return Hardware::default();
    }
    let mut buf = vec![0u8; size as usize];
    let written = unsafe { GetSystemFirmwareTable(RSMB, 0, buf.as_mut_ptr().cast(), size) };
    if written == 0 || written as usize > buf.len() || buf.len() < 8 {
        return Hardware::default();
    }
    let length = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    parse_smbios(&buf[8..(8 + length).min(buf.len())])
}

#[cfg(unix)]
pub fn collect() -> Hardware {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/sys/class/dmi/id/{name}"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    Hardware {
        manufacturer: read("sys_vendor"),
        model: read("product_name"),
        // Readable by root only, which the agent is.
        serial_number: read("product_serial"),
        bios_version: read("bios_version"),
        bios_date: read("bios_date"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn structure(kind: u8, formatted: &[u8], strings: &[&str]) -> Vec<u8> {
        let mut out = vec![kind, (4 + formatted.len()) as u8, 0, 0];
        out.extend_from_slice(formatted);
        for s in strings {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        if strings.is_empty() {
            out.push(0);
        }
        out.push(0);
        out
    }

    #[test]
    fn bios_and_system_strings_are_read_by_their_index() {
        // Type 0: vendor #1, version #2 at 0x05, date #3 at 0x08.
        let bios = structure(0, &[1, 2, 0, 0, 3, 0], &["Acme BIOS", "1.2.3", "06/08/2012"]);
        // Type 1: manufacturer #1, product #2, version #3, serial #4.
        let system = structure(1, &[1, 2, 3, 4], &["Contoso", "Desk 9000", "rev A", "SN-42 "]);
        let other = structure(4, &[0, 0], &[]);
        let end = structure(127, &[], &[]);
        let table = [bios, other, system, end].concat();
        assert_eq!(
            parse_smbios(&table),
            Hardware {
                manufacturer: "Contoso".into(),
                model: "Desk 9000".into(),
                serial_number: "SN-42".into(),
                bios_version: "1.2.3".into(),
                bios_date: "06/08/2012".into(),
            }
        );
    }

    #[test]
    fn a_truncated_or_empty_table_gives_what_it_has() {
        assert_eq!(parse_smbios(&[]), Hardware::default());
        let system = structure(1, &[1, 0, 0, 9], &["Contoso"]);
        let mut table = system.clone();
        table.extend_from_slice(&[1, 200, 0]); // a structure claiming more bytes than there are
        let hw = parse_smbios(&table);
        assert_eq!((hw.manufacturer.as_str(), hw.serial_number.as_str()), ("Contoso", ""));
    }
}
