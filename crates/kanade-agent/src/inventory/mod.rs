//! Hardware and software facts for `inventory.<pc>`: OS, CPU, memory, disks, network
//! interfaces (sysinfo, cross-platform) and installed software (see [`software`]).

pub mod hardware;
mod software;

use kanade_shared::PcId;
use kanade_shared::wire::{Cpu, Disk, Inventory, NetworkInterface, Timestamp};
use sysinfo::{CpuRefreshKind, Disks, Networks, RefreshKind, System};

pub use software::parse_dpkg;

/// Collect everything. Blocking (reads /proc, the registry, runs dpkg): call it off the async
/// runtime's worker threads.
pub fn collect(pc: &PcId) -> Inventory {
    let mut system = System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()));
    system.refresh_memory();
    let cpu = Cpu {
        model: system.cpus().first().map(|c| c.brand().trim().to_owned()).unwrap_or_default(),
        cores: system.cpus().len() as u32,
    };
    let disks = Disks::new_with_refreshed_list()
        .list()
        .iter()
        .map(|d| Disk {
            mount: d.mount_point().display().to_string(),
            total_bytes: d.total_space(),
            free_bytes: d.available_space(),
            file_system: d.file_system().to_string_lossy().into_owned(),
        })
        .collect();
    let mut network: Vec<NetworkInterface> = Networks::new_with_refreshed_list()
        .iter()
        .map(|(name, data)| NetworkInterface {
            name: name.clone(),
            mac: data.mac_address().to_string(),
            addresses: data.ip_networks().iter().map(|n| format!("{}/{}", n.addr, n.prefix)).collect(),
        })
        .collect();
    network.sort_by(|a, b| a.name.cmp(&b.name));
    Inventory {
        schema: kanade_shared::wire::SCHEMA,
        pc_id: pc.clone(),
        collected_at: Timestamp::now_utc(),
        hostname: System::host_name().unwrap_or_default(),
        os: os_info(),
        os_build: os_build(),
        boot_time: Timestamp::from_unix_timestamp(System::boot_time() as i64).ok(),
        cpu,
        memory_total_bytes: system.total_memory(),
        disks,
        network,
        software: software::installed(),
        hardware: hardware::collect(),
        os_edition: os_edition(),
    }
}

/// Windows: edition and release from the registry (`Professional 23H2`, build with its update
/// revision goes in `os_build`); empty elsewhere.
#[cfg(windows)]
fn os_edition() -> String {
    use winreg::RegKey;
    use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_READ};
    let Ok(key) = RegKey::predef(HKEY_LOCAL_MACHINE)
        .open_subkey_with_flags(r"SOFTWARE\Microsoft\Windows NT\CurrentVersion", KEY_READ)
    else {
        return String::new();
    };
    let get = |name: &str| key.get_value::<String, _>(name).unwrap_or_default();
    [get("EditionID"), get("DisplayVersion")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(not(windows))]
fn os_edition() -> String {
    String::new()
}

/// The OS build: on Windows `CurrentBuild.UBR` from the registry (`22631.4460`), elsewhere the
/// kernel version.
#[cfg(windows)]
fn os_build() -> String {
    use winreg::RegKey;
    use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_READ};
    let Ok(key) = RegKey::predef(HKEY_LOCAL_MACHINE)
        .open_subkey_with_flags(r"SOFTWARE\Microsoft\Windows NT\CurrentVersion", KEY_READ)
    else {
        return System::kernel_version().unwrap_or_default();
    };
    let build = key.get_value::<String, _>("CurrentBuild").unwrap_or_default();
    match key.get_value::<u32, _>("UBR") {
        Ok(ubr) if !build.is_empty() => format!("{build}.{ubr}"),
        _ if !build.is_empty() => build,
        _ => System::kernel_version().unwrap_or_default(),
    }
}

#[cfg(not(windows))]
fn os_build() -> String {
    System::kernel_version().unwrap_or_default()
}

/// The OS this agent runs on, as heartbeats and inventory report it.
pub fn os_info() -> kanade_shared::wire::OsInfo {
    kanade_shared::wire::OsInfo {
        family: std::env::consts::OS.to_owned(),
        name: sysinfo::System::name().unwrap_or_default(),
        version: sysinfo::System::os_version().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_this_machine() {
        let inv = collect(&"PC-1".parse().unwrap());
        assert!(inv.cpu.cores >= 1);
        assert!(inv.memory_total_bytes > 0);
        assert!(!inv.disks.is_empty() || cfg!(not(target_os = "linux")));
        assert!(inv.network.iter().any(|n| n.name == "lo") || cfg!(not(target_os = "linux")));
        assert!(inv.boot_time.is_some());
        // Round-trips as a wire type.
        let bytes = kanade_shared::wire::encode(&inv).unwrap();
        assert_eq!(kanade_shared::wire::decode::<Inventory>(&bytes).unwrap(), inv);
    }
}
