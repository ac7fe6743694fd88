//! `detect --format text`: the facts as a short summary for people.

use std::fmt::Write;

use crate::facts::{Disk, Facts, Firmware};

pub fn summary(facts: &Facts) -> String {
    let mut out = String::new();
    host(&mut out, facts);
    disks(&mut out, &facts.disks);
    network(&mut out, facts);
    if let Some(cloud) = facts
        .cloud
        .as_ref()
        .and_then(|c| serde_json::to_value(c).ok())
    {
        let _ = writeln!(out, "\ncloud");
        if let Some(map) = cloud.as_object() {
            for (key, value) in map
                .iter()
                .filter(|(_, v)| !v.is_null() && !v.is_array() && !v.is_object())
            {
                let _ = writeln!(
                    out,
                    "  {key}: {}",
                    value.as_str().map_or(value.to_string(), str::to_string)
                );
            }
        }
    }
    out
}

fn or_unknown(value: Option<&str>) -> &str {
    value.unwrap_or("unknown")
}

fn host(out: &mut String, facts: &Facts) {
    let h = &facts.host;
    let firmware = match h.firmware {
        Firmware::Uefi => format!(
            "UEFI, Secure Boot {}",
            match h.secure_boot {
                Some(true) => "on",
                Some(false) => "off",
                None => "unknown",
            }
        ),
        Firmware::Bios => "BIOS".to_string(),
    };
    let machine = [
        facts.dmi.sys_vendor.as_deref(),
        facts.dmi.product_name.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let _ = writeln!(out, "host");
    let _ = writeln!(
        out,
        "  machine:   {}",
        if machine.is_empty() {
            "unknown"
        } else {
            &machine
        }
    );
    let _ = writeln!(
        out,
        "  system:    {} ({}), kernel {}",
        or_unknown(h.os.pretty_name.as_deref()),
        h.arch,
        or_unknown(h.kernel_release.as_deref())
    );
    let _ = writeln!(
        out,
        "  firmware:  {firmware}, lockdown {}",
        or_unknown(h.lockdown.as_deref())
    );
    let _ = writeln!(
        out,
        "  resources: {} CPUs, {} memory ({} available)",
        h.cpu_count,
        human_bytes(h.memory_bytes),
        human_bytes(h.memory_available_bytes)
    );
    if let Some(kind) = &h.container {
        let _ = writeln!(out, "  container: {kind}");
    }
    if h.kexec_allowed {
        let _ = writeln!(out, "  kexec:     allowed");
    } else {
        let _ = writeln!(out, "  kexec:     blocked");
        for reason in &h.kexec_blockers {
            let _ = writeln!(out, "    - {reason}");
        }
    }
}

fn disks(out: &mut String, disks: &[Disk]) {
    let _ = writeln!(out, "\ndisks");
    if disks.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for d in disks {
        let mut ident: Vec<String> = d.model.iter().cloned().collect();
        ident.extend(d.serial.as_ref().map(|s| format!("serial {s}")));
        ident.extend(d.fs_label.as_ref().map(|l| format!("label {l}")));
        let transport = serde_json::to_value(d.transport)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let root = if d.holds_root { "  <- root" } else { "" };
        let _ = writeln!(
            out,
            "  {:<12} {:>9}  {transport:<7} {}{root}",
            d.path,
            human_bytes(d.size_bytes),
            ident.join(", ")
        );
        for p in &d.partitions {
            let mut uses: Vec<String> = p.mountpoints.clone();
            uses.extend(p.holders.iter().map(|h| format!("held by {h}")));
            if p.swap {
                uses.push("swap".to_string());
            }
            let label = p
                .partlabel
                .as_deref()
                .or(p.fs_label.as_deref())
                .unwrap_or("");
            let _ = writeln!(
                out,
                "    {:<12} {:>9}  {label:<12} {}",
                p.name,
                human_bytes(p.size_bytes),
                uses.join(", ")
            );
        }
        if !d.mountpoints.is_empty() {
            let _ = writeln!(
                out,
                "    (whole disk) mounted on {}",
                d.mountpoints.join(", ")
            );
        }
    }
}

fn network(out: &mut String, facts: &Facts) {
    let net = &facts.network;
    let _ = writeln!(out, "\nnetwork");
    for i in net.interfaces.iter().filter(|i| i.link_type != "loopback") {
        let _ = writeln!(
            out,
            "  {:<10} {} {} mtu {} {}{}",
            i.name,
            i.state,
            i.mac.as_deref().unwrap_or("-"),
            i.mtu,
            i.driver.as_deref().unwrap_or("-"),
            if i.physical { "" } else { " (virtual)" }
        );
        for a in &i.addresses {
            let kind = if a.dynamic { "dynamic" } else { "static" };
            let _ = writeln!(
                out,
                "    {}/{} scope {} {kind}",
                a.address, a.prefix_len, a.scope
            );
        }
    }
    let _ = writeln!(out, "  routes");
    for r in &net.routes {
        let mut line = format!("    {}", r.dst);
        if let Some(gw) = &r.gateway {
            let _ = write!(line, " via {gw}");
        }
        if let Some(dev) = &r.dev {
            let _ = write!(line, " dev {dev}");
        }
        let _ = write!(line, " proto {}", r.protocol);
        if let Some(metric) = r.metric {
            let _ = write!(line, " metric {metric}");
        }
        if r.onlink {
            line.push_str(" onlink");
        }
        let _ = writeln!(out, "{line}");
    }
    let source = net
        .dns_source
        .as_deref()
        .map(|s| format!(" (from {s})"))
        .unwrap_or_default();
    let servers = if net.dns.is_empty() {
        "none".to_string()
    } else {
        net.dns.join(", ")
    };
    let _ = writeln!(out, "  dns: {servers}{source}");
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
