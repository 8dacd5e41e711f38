//! `Inventory`: hardware and software facts; the INVENTORY stream keeps the latest per PC.

use serde::{Deserialize, Serialize};

use super::{OsInfo, Timestamp, schema_v1};
use crate::ids::PcId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    #[serde(default = "schema_v1")]
    pub schema: u32,
    pub pc_id: PcId,
    #[serde(with = "time::serde::rfc3339")]
    pub collected_at: Timestamp,
    pub hostname: String,
    pub os: OsInfo,
    #[serde(default)]
    pub os_build: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub boot_time: Option<Timestamp>,
    pub cpu: Cpu,
    pub memory_total_bytes: u64,
    #[serde(default)]
    pub disks: Vec<Disk>,
    #[serde(default)]
    pub network: Vec<NetworkInterface>,
    #[serde(default)]
    pub software: Vec<Software>,
    /// Firmware facts (SMBIOS on Windows, /sys/class/dmi on Linux); empty strings when unknown.
    #[serde(default)]
    pub hardware: Hardware,
    /// Windows edition and release (`Professional 23H2`); empty elsewhere.
    #[serde(default)]
    pub os_edition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Hardware {
    #[serde(default)]
    pub manufacturer: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub serial_number: String,
    #[serde(default)]
    pub bios_version: String,
    #[serde(default)]
    pub bios_date: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cpu {
    pub model: String,
    pub cores: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub mount: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    #[serde(default)]
    pub file_system: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub name: String,
    #[serde(default)]
    pub mac: String,
    #[serde(default)]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Software {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub publisher: String,
}
