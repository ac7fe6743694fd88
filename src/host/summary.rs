//! `detect --format text`: the facts as a short summary for people.

use std::fmt::{Result, Write};

use crate::facts::{Disk, Facts, Firmware, NetworkFacts};

pub fn summary(facts: &Facts) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_summary(&mut out, facts);
    // Columns padded for alignment leave trailing blanks on rows with an empty last column.
    out.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_summary(out: &mut String, facts: &Facts) -> Result {
    host(out, facts)?;
    disks(out, &facts.disks)?;
    network(out, &facts.network)?;
    cloud(out, facts)
}

fn or_unknown(value: Option<&str>) -> &str {
    value.unwrap_or("unknown")
}

fn host(out: &mut String, facts: &Facts) -> Result {
    let h = &facts.host;
    let firmware = match (h.firmware, h.secure_boot) {
        (Firmware::Bios, _) => "BIOS",
        (Firmware::Uefi, Some(true)) => "UEFI, Secure Boot on",
        (Firmware::Uefi, Some(false)) => "UEFI, Secure Boot off",
        (Firmware::Uefi, None) => "UEFI, Secure Boot unknown",
    };
    let machine = [
        facts.dmi.sys_vendor.as_deref(),
        facts.dmi.product_name.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    writeln!(out, "host")?;
    writeln!(
        out,
        "  machine:   {}",
        if machine.is_empty() {
            "unknown"
        } else {
            &machine
        }
    )?;
    writeln!(
        out,
        "  system:    {} ({}), kernel {}",
        or_unknown(h.os.pretty_name.as_deref()),
        h.arch,
        or_unknown(h.kernel_release.as_deref())
    )?;
    writeln!(
        out,
        "  firmware:  {firmware}, lockdown {}",
        or_unknown(h.lockdown.as_deref())
    )?;
    writeln!(
        out,
        "  resources: {} CPUs, {} memory ({} available)",
        h.cpu_count,
        human_bytes(h.memory_bytes),
        human_bytes(h.memory_available_bytes)
    )?;
    if let Some(kind) = &h.container {
        writeln!(out, "  container: {kind}")?;
    }
    if h.kexec_allowed {
        return writeln!(out, "  kexec:     allowed");
    }
    writeln!(out, "  kexec:     blocked")?;
    for reason in &h.kexec_blockers {
        writeln!(out, "    - {reason}")?;
    }
    Ok(())
}

fn disks(out: &mut String, disks: &[Disk]) -> Result {
    writeln!(out, "\ndisks")?;
    if disks.is_empty() {
        writeln!(out, "  (none)")?;
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
        writeln!(
            out,
            "  {:<12} {:>9}  {transport:<7} {}{root}",
            d.path,
            human_bytes(d.size_bytes),
            ident.join(", ")
        )?;
        for p in &d.partitions {
            let mut uses = p.mountpoints.clone();
            uses.extend(p.holders.iter().map(|h| format!("held by {h}")));
            if p.swap {
                uses.push("swap".to_string());
            }
            let label = p
                .partlabel
                .as_deref()
                .or(p.fs_label.as_deref())
                .unwrap_or("");
            writeln!(
                out,
                "    {:<12} {:>9}  {label:<12} {}",
                p.name,
                human_bytes(p.size_bytes),
                uses.join(", ")
            )?;
        }
        if !d.mountpoints.is_empty() {
            writeln!(
                out,
                "    (whole disk) mounted on {}",
                d.mountpoints.join(", ")
            )?;
        }
    }
    Ok(())
}

fn network(out: &mut String, net: &NetworkFacts) -> Result {
    writeln!(out, "\nnetwork")?;
    for i in net.interfaces.iter().filter(|i| i.link_type != "loopback") {
        writeln!(
            out,
            "  {:<10} {} {} mtu {} {}{}",
            i.name,
            i.state,
            i.mac.as_ref().map_or("-", |m| m.as_str()),
            i.mtu,
            i.driver.as_deref().unwrap_or("-"),
            if i.physical { "" } else { " (virtual)" }
        )?;
        for a in &i.addresses {
            let kind = if a.dynamic { "dynamic" } else { "static" };
            writeln!(
                out,
                "    {}/{} scope {} {kind}",
                a.address, a.prefix_len, a.scope
            )?;
        }
    }
    writeln!(out, "  routes")?;
    for r in &net.routes {
        write!(out, "    {}", r.dst)?;
        if let Some(gw) = &r.gateway {
            write!(out, " via {gw}")?;
        }
        if let Some(dev) = &r.dev {
            write!(out, " dev {dev}")?;
        }
        write!(out, " proto {}", r.protocol)?;
        if let Some(metric) = r.metric {
            write!(out, " metric {metric}")?;
        }
        writeln!(out, "{}", if r.onlink { " onlink" } else { "" })?;
    }
    let servers = if net.dns.is_empty() {
        "none".to_string()
    } else {
        let list: Vec<String> = net.dns.iter().map(ToString::to_string).collect();
        list.join(", ")
    };
    let source = net
        .dns_source
        .as_deref()
        .map(|s| format!(" (from {s})"))
        .unwrap_or_default();
    writeln!(out, "  dns: {servers}{source}")
}

/// The provider's facts are its own schema: print their top-level scalar values.
fn cloud(out: &mut String, facts: &Facts) -> Result {
    let Some(cloud) = facts
        .cloud
        .as_ref()
        .and_then(|c| serde_json::to_value(c).ok())
    else {
        return Ok(());
    };
    writeln!(out, "\ncloud")?;
    for (key, value) in cloud.as_object().into_iter().flatten() {
        match value {
            serde_json::Value::String(s) => writeln!(out, "  {key}: {s}")?,
            serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
                writeln!(out, "  {key}: {value}")?
            }
            _ => {}
        }
    }
    Ok(())
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
