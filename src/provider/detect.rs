//! Local identification: a pure function of the DMI facts and a few other local signals,
//! using the fingerprints cloud-init checks (`tools/ds-identify`'s `dscheck_*` functions and
//! the datasources' own DMI checks). No network here.

use crate::facts::Facts;
use crate::host::SysRoot;
use crate::Result;

use super::{Metadata, ProviderKind};

/// Local signals beyond DMI, read once through the [`SysRoot`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// `/sys/hypervisor/uuid` (old Xen EC2 instances).
    pub hypervisor_uuid: Option<String>,
    /// `/proc/cmdline`.
    pub cmdline: Option<String>,
    /// `/var/run/scaleway` exists (Scaleway's initrd creates it).
    pub scaleway_marker: bool,
    /// `/etc/vultr` exists (Vultr bare metal).
    pub vultr_marker: bool,
    /// A NoCloud seed directory under `/var/lib/cloud/seed/`.
    pub nocloud_seed: Option<String>,
}

/// NoCloud seed directories, in cloud-init's order.
pub const NOCLOUD_SEED_DIRS: &[&str] = &[
    "/var/lib/cloud/seed/nocloud",
    "/var/lib/cloud/seed/nocloud-net",
];

impl Signals {
    pub fn gather(root: &SysRoot) -> Self {
        let read = |p: &str| {
            std::fs::read(root.join(p))
                .ok()
                .map(|b| {
                    String::from_utf8_lossy(&b[..b.len().min(64 * 1024)])
                        .trim()
                        .to_owned()
                })
                .filter(|s| !s.is_empty())
        };
        Self {
            hypervisor_uuid: read("/sys/hypervisor/uuid"),
            cmdline: read("/proc/cmdline"),
            scaleway_marker: root.join("/var/run/scaleway").exists(),
            vultr_marker: root.join("/etc/vultr").exists(),
            nocloud_seed: NOCLOUD_SEED_DIRS
                .iter()
                .find(|d| root.join(d).join("meta-data").is_file())
                .map(|d| (*d).to_owned()),
        }
    }
}

/// Which provider the local signals name, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub kind: ProviderKind,
    /// E.g. `dmi:sys_vendor=Hetzner`.
    pub evidence: Vec<String>,
}

const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085-8269-3286-77";
const OPENSTACK_NAMES: &[&str] = &["OpenStack Nova", "OpenStack Compute"];
const OPENSTACK_ASSET_TAGS: &[&str] = &[
    "OpenStack Nova",
    "OpenStack Compute",
    "OpenTelekomCloud",
    "SAP CCloud VM",
    "HUAWEICLOUD",
    "Samsung Cloud Platform",
];

/// The provider local signals name, or `None` when they are silent. DMI is ignored inside a
/// container: it is the host's.
pub fn identify(facts: &Facts, signals: &Signals) -> Option<Detection> {
    let found = |kind, evidence: String| {
        Some(Detection {
            kind,
            evidence: vec![evidence],
        })
    };
    // NoCloud first: a seed on any cloud is an explicit choice by whoever attached it.
    if let Some(d) = nocloud(facts, signals) {
        return Some(d);
    }
    let in_container = facts.host.container.is_some();
    if !in_container {
        let dmi = &facts.dmi;
        let tag = v(&dmi.chassis_asset_tag);
        let name = v(&dmi.product_name);
        let vendor = v(&dmi.sys_vendor);
        let serial = v(&dmi.product_serial);
        if tag == AZURE_ASSET_TAG {
            return found(ProviderKind::Azure, format!("dmi:chassis_asset_tag={tag}"));
        }
        if tag == "OracleCloud.com" {
            return found(ProviderKind::Oracle, format!("dmi:chassis_asset_tag={tag}"));
        }
        if name == "Google Compute Engine" || name == "Google" {
            return found(ProviderKind::Gcp, format!("dmi:product_name={name}"));
        }
        if name == "Alibaba Cloud ECS" {
            return found(ProviderKind::Alibaba, format!("dmi:product_name={name}"));
        }
        if name.starts_with("Exoscale") {
            return found(ProviderKind::Exoscale, format!("dmi:product_name={name}"));
        }
        if OPENSTACK_NAMES.contains(&name) {
            return found(ProviderKind::Openstack, format!("dmi:product_name={name}"));
        }
        if OPENSTACK_ASSET_TAGS.contains(&tag) {
            return found(
                ProviderKind::Openstack,
                format!("dmi:chassis_asset_tag={tag}"),
            );
        }
        let by_vendor = match vendor {
            "Hetzner" => Some(ProviderKind::Hetzner),
            "DigitalOcean" => Some(ProviderKind::Digitalocean),
            "Vultr" => Some(ProviderKind::Vultr),
            "Linode" | "Akamai" => Some(ProviderKind::Akamai),
            "UpCloud" => Some(ProviderKind::Upcloud),
            "Scaleway" => Some(ProviderKind::Scaleway),
            _ => None,
        };
        if let Some(kind) = by_vendor {
            return found(kind, format!("dmi:sys_vendor={vendor}"));
        }
        if let Some(uuid) = dmi.product_uuid.as_deref() {
            if is_ec2_uuid(uuid) && !ec2_lookalike(facts) {
                return found(ProviderKind::Aws, format!("dmi:product_uuid={uuid}"));
            }
        }
        if serial.starts_with("GoogleCloud-") {
            return found(ProviderKind::Gcp, format!("dmi:product_serial={serial}"));
        }
        if let Some(uuid) = signals.hypervisor_uuid.as_deref() {
            if uuid.to_ascii_lowercase().starts_with("ec2") {
                return found(ProviderKind::Aws, format!("hypervisor_uuid={uuid}"));
            }
        }
    }
    let cmdline_has = |word: &str| {
        signals
            .cmdline
            .as_deref()
            .is_some_and(|c| c.split_whitespace().any(|w| w == word))
    };
    if signals.scaleway_marker || cmdline_has("scaleway") {
        return found(ProviderKind::Scaleway, "local:scaleway-marker".into());
    }
    if signals.vultr_marker || cmdline_has("vultr") {
        return found(ProviderKind::Vultr, "local:vultr-marker".into());
    }
    None
}

fn v(f: &Option<String>) -> &str {
    f.as_deref().map(str::trim).unwrap_or("")
}

fn nocloud(facts: &Facts, signals: &Signals) -> Option<Detection> {
    let mut evidence = Vec::new();
    if facts.host.container.is_none()
        && facts
            .dmi
            .product_serial
            .as_deref()
            .is_some_and(|s| s.contains("ds=nocloud"))
    {
        evidence.push("dmi:product_serial=ds=nocloud".to_owned());
    }
    if signals
        .cmdline
        .as_deref()
        .is_some_and(|c| c.split_whitespace().any(|w| w.starts_with("ds=nocloud")))
    {
        evidence.push("cmdline:ds=nocloud".to_owned());
    }
    if cidata_label(facts).is_some() {
        evidence.push("fs_label:cidata".to_owned());
    }
    if let Some(dir) = &signals.nocloud_seed {
        evidence.push(format!("seed:{dir}"));
    }
    (!evidence.is_empty()).then_some(Detection {
        kind: ProviderKind::Nocloud,
        evidence,
    })
}

/// The mountpoint list of a filesystem labelled `cidata` (any case), if one exists.
pub fn cidata_label(facts: &Facts) -> Option<Vec<String>> {
    let is_cidata = |l: &Option<String>| {
        l.as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case("cidata"))
    };
    facts.disks.iter().find_map(|d| {
        if is_cidata(&d.fs_label) {
            return Some(d.mountpoints.clone());
        }
        d.partitions
            .iter()
            .find(|p| is_cidata(&p.fs_label))
            .map(|p| p.mountpoints.clone())
    })
}

/// `ec2…` as the first group of the UUID, in either byte order of its first field.
pub fn is_ec2_uuid(uuid: &str) -> bool {
    let first = uuid
        .trim()
        .split('-')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if first.starts_with("ec2") {
        return true;
    }
    // Little-endian storage: `45e12aec` is `ec2ae145` read the other way round.
    if first.len() == 8 && first.is_ascii() {
        let swapped: String = (0..4).rev().map(|i| &first[i * 2..i * 2 + 2]).collect();
        return swapped.starts_with("ec2");
    }
    false
}

/// EC2-compatible clouds that carry EC2-looking UUIDs but are not AWS.
fn ec2_lookalike(facts: &Facts) -> bool {
    let d = &facts.dmi;
    let v = |f: &Option<String>| f.as_deref().unwrap_or("").trim().to_owned();
    v(&d.product_serial).ends_with(".brightbox.com")
        || v(&d.chassis_asset_tag).ends_with(".zstack.io")
        || ["e24cloud", "Tilaa", "3DS Outscale"].contains(&v(&d.sys_vendor).as_str())
}

/// Where the DMI carries the instance identity, it must agree with the metadata: a mismatch
/// means the metadata is some other machine's (a misrouted or spoofed service).
pub fn cross_check(kind: ProviderKind, facts: &Facts, meta: &Metadata) -> Result<()> {
    if facts.host.container.is_some() {
        return Ok(());
    }
    let (field, local) = match kind {
        ProviderKind::Hetzner | ProviderKind::Digitalocean | ProviderKind::Akamai => {
            ("product_serial", facts.dmi.product_serial.as_deref())
        }
        ProviderKind::Upcloud => ("product_uuid", facts.dmi.product_uuid.as_deref()),
        _ => return Ok(()),
    };
    let (Some(local), Some(remote)) = (local.map(str::trim), meta.instance_id.as_deref()) else {
        return Ok(());
    };
    if local.eq_ignore_ascii_case(remote) {
        return Ok(());
    }
    Err(crate::Error::Metadata {
        provider: kind.as_str(),
        reason: "metadata-mismatch",
        message: format!(
            "the instance id {remote} does not match DMI {field} {local}; refusing to use another machine's metadata"
        ),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn facts(f: impl FnOnce(&mut crate::facts::DmiFacts)) -> Facts {
        let mut facts = Facts::default();
        f(&mut facts.dmi);
        facts
    }

    fn kind(facts: &Facts) -> Option<ProviderKind> {
        identify(facts, &Signals::default()).map(|d| d.kind)
    }

    #[test]
    fn ec2_uuid_in_both_byte_orders() {
        assert!(is_ec2_uuid("EC2E1916-9099-7CAF-FD21-012345ABCDEF"));
        assert!(is_ec2_uuid("45E12AEC-DCD1-B213-94ED-012345ABCDEF"));
        assert!(!is_ec2_uuid("12345678-1234-1234-1234-123456789012"));
        assert!(!is_ec2_uuid(""));
    }

    #[test]
    fn dmi_fingerprints() {
        type SetDmi = fn(&mut crate::facts::DmiFacts);
        let cases: &[(SetDmi, ProviderKind)] = &[
            (
                |d| d.chassis_asset_tag = Some(AZURE_ASSET_TAG.into()),
                ProviderKind::Azure,
            ),
            (
                |d| d.chassis_asset_tag = Some("OracleCloud.com".into()),
                ProviderKind::Oracle,
            ),
            (
                |d| d.product_name = Some("Google Compute Engine".into()),
                ProviderKind::Gcp,
            ),
            (
                |d| d.product_serial = Some("GoogleCloud-8F2E88F".into()),
                ProviderKind::Gcp,
            ),
            (
                |d| d.product_name = Some("Alibaba Cloud ECS".into()),
                ProviderKind::Alibaba,
            ),
            (
                |d| d.product_name = Some("Exoscale Compute Platform".into()),
                ProviderKind::Exoscale,
            ),
            (
                |d| d.product_name = Some("OpenStack Nova".into()),
                ProviderKind::Openstack,
            ),
            (
                |d| d.chassis_asset_tag = Some("HUAWEICLOUD".into()),
                ProviderKind::Openstack,
            ),
            (
                |d| d.sys_vendor = Some("Hetzner".into()),
                ProviderKind::Hetzner,
            ),
            (
                |d| d.sys_vendor = Some("DigitalOcean".into()),
                ProviderKind::Digitalocean,
            ),
            (|d| d.sys_vendor = Some("Vultr".into()), ProviderKind::Vultr),
            (
                |d| d.sys_vendor = Some("Akamai".into()),
                ProviderKind::Akamai,
            ),
            (
                |d| d.sys_vendor = Some("Linode".into()),
                ProviderKind::Akamai,
            ),
            (
                |d| d.sys_vendor = Some("UpCloud".into()),
                ProviderKind::Upcloud,
            ),
            (
                |d| d.sys_vendor = Some("Scaleway".into()),
                ProviderKind::Scaleway,
            ),
            (
                |d| d.product_uuid = Some("ec2e1916-9099-7caf-fd21-012345abcdef".into()),
                ProviderKind::Aws,
            ),
            (
                |d| d.product_serial = Some("ds=nocloud;s=http://10.0.2.2/".into()),
                ProviderKind::Nocloud,
            ),
        ];
        for (set, want) in cases {
            assert_eq!(kind(&facts(set)), Some(*want), "{want}");
        }
        assert_eq!(kind(&facts(|d| d.sys_vendor = Some("QEMU".into()))), None);
    }

    #[test]
    fn ec2_lookalikes_are_not_aws() {
        let f = facts(|d| {
            d.product_uuid = Some("ec2e1916-9099-7caf-fd21-012345abcdef".into());
            d.sys_vendor = Some("Tilaa".into());
        });
        assert_eq!(kind(&f), None);
    }

    #[test]
    fn dmi_is_ignored_in_containers() {
        let mut f = facts(|d| d.sys_vendor = Some("Hetzner".into()));
        f.host.container = Some("docker".into());
        assert_eq!(kind(&f), None);
    }

    #[test]
    fn other_local_signals() {
        let f = Facts::default();
        let s = Signals {
            cmdline: Some("root=/dev/vda1 ds=nocloud;s=http://10.0.2.2:8000/ quiet".into()),
            ..Signals::default()
        };
        assert_eq!(
            identify(&f, &s).map(|d| d.kind),
            Some(ProviderKind::Nocloud)
        );
        let s = Signals {
            hypervisor_uuid: Some("ec2a1234-0000-0000-0000-000000000000".into()),
            ..Signals::default()
        };
        assert_eq!(identify(&f, &s).map(|d| d.kind), Some(ProviderKind::Aws));
    }

    #[test]
    fn identity_mismatch_is_an_error() {
        let f = facts(|d| {
            d.sys_vendor = Some("Hetzner".into());
            d.product_serial = Some("111".into());
        });
        let meta = Metadata {
            instance_id: Some("222".into()),
            ..Metadata::default()
        };
        let err = cross_check(ProviderKind::Hetzner, &f, &meta).unwrap_err();
        assert_eq!(err.reason(), "metadata-mismatch");
        let ok = Metadata {
            instance_id: Some("111".into()),
            ..Metadata::default()
        };
        assert!(cross_check(ProviderKind::Hetzner, &f, &ok).is_ok());
    }
}
