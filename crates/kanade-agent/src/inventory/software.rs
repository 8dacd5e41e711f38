//! Installed software: dpkg or rpm on Linux, the Uninstall registry keys on Windows.

use kanade_shared::wire::Software;

#[cfg(unix)]
pub fn installed() -> Vec<Software> {
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    if let Some(out) = run("dpkg-query", &["-W", "-f=${Package}\\t${Version}\\t${Maintainer}\\n"]) {
        return parse_dpkg(&out);
    }
    if let Some(out) = run("rpm", &["-qa", "--qf", "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{VENDOR}\\n"]) {
        return parse_dpkg(&out);
    }
    Vec::new()
}

/// `name<TAB>version<TAB>publisher` lines (the format both queries above print), sorted by name.
pub fn parse_dpkg(text: &str) -> Vec<Software> {
    let mut out: Vec<Software> = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split('\t');
            let name = parts.next()?.trim();
            (!name.is_empty()).then(|| Software {
                name: name.to_owned(),
                version: parts.next().unwrap_or_default().trim().to_owned(),
                publisher: parts
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .trim_end_matches("(none)")
                    .trim()
                    .to_owned(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(windows)]
pub fn installed() -> Vec<Software> {
    use winreg::RegKey;
    use winreg::enums::{HKEY_LOCAL_MACHINE, HKEY_USERS, KEY_READ};

    const UNINSTALL: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";
    // Machine-wide installs in both registry views (64- and 32-bit), and per-user installs of
    // every user whose hive is loaded (signed in, or a service account), as far as readable.
    let mut roots = vec![
        (RegKey::predef(HKEY_LOCAL_MACHINE), UNINSTALL.to_owned()),
        (
            RegKey::predef(HKEY_LOCAL_MACHINE),
            r"SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall".to_owned(),
        ),
    ];
    let users = RegKey::predef(HKEY_USERS);
    for sid in users.enum_keys().flatten().filter(|s| !s.ends_with("_Classes")) {
        roots.push((RegKey::predef(HKEY_USERS), format!(r"{sid}\{UNINSTALL}")));
    }
    let mut out = Vec::new();
    for (hive, path) in roots {
        let Ok(key) = hive.open_subkey_with_flags(&path, KEY_READ) else { continue };
        for name in key.enum_keys().flatten() {
            let Ok(entry) = key.open_subkey_with_flags(&name, KEY_READ) else { continue };
            let Ok(display) = entry.get_value::<String, _>("DisplayName") else { continue };
            // Updates and components are not what an admin means by installed software.
            if entry.get_value::<u32, _>("SystemComponent").unwrap_or(0) == 1 {
                continue;
            }
            out.push(Software {
                name: display,
                version: entry.get_value("DisplayVersion").unwrap_or_default(),
                publisher: entry.get_value("Publisher").unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_package_lines_and_skips_blank_ones() {
        let text = "zlib1g\t1:1.2.13\tDebian Maintainers\n\nbash\t5.2.15-2\t(none)\nlonely\n";
        let got = parse_dpkg(text);
        let names: Vec<_> =
            got.iter().map(|s| (s.name.as_str(), s.version.as_str(), s.publisher.as_str())).collect();
        assert_eq!(
            names,
            [("bash", "5.2.15-2", ""), ("lonely", "", ""), ("zlib1g", "1:1.2.13", "Debian Maintainers")]
        );
    }
}
