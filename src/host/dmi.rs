//! DMI (SMBIOS) strings from `/sys/class/dmi/id`.
//!
//! `product_serial` and `product_uuid` are root-only; for a normal user they are absent, never
//! an error. Inside a container these are the host's values: consumers check `host.container`.

use super::SysRoot;
use crate::facts::DmiFacts;

pub fn inspect(root: &SysRoot) -> DmiFacts {
    let field = |name: &str| read_field(root, name);
    DmiFacts {
        sys_vendor: field("sys_vendor"),
        product_name: field("product_name"),
        product_serial: field("product_serial"),
        product_uuid: field("product_uuid"),
        chassis_asset_tag: field("chassis_asset_tag"),
        board_vendor: field("board_vendor"),
        bios_vendor: field("bios_vendor"),
    }
}

/// Firmware that leaves a string unset often fills it with 0xff bytes; cloud-init treats
/// that as empty, and so do we.
fn read_field(root: &SysRoot, name: &str) -> Option<String> {
    let path = format!("/sys/class/dmi/id/{name}");
    let bytes = root.read_bytes(path)?;
    if bytes.iter().all(|b| matches!(b, 0xff | b'\n' | 0)) {
        return None;
    }
    super::sysroot::text(&bytes)
}
