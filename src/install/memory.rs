//! Making room before evaluation: NixOS evaluation alone takes 1.5-2 GiB, and the
//! installer's store lives in RAM. Below [`TIGHT_BYTES`] stage 2 adds zram swap.

use std::path::Path;

use super::tools::Tools;

/// Below this much RAM, evaluation risks the OOM killer.
pub const TIGHT_BYTES: u64 = 2 << 30;

/// `MemTotal` from a meminfo file, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    crate::host::meminfo_bytes(meminfo, "MemTotal")
}

/// Whether any swap is active (`/proc/swaps` has more than its header).
pub fn swap_active(swaps: &str) -> bool {
    swaps.lines().count() > 1
}

/// Adds a zram swap device of half the RAM when memory is tight and no swap is on.
/// Returns what it did, for the log; a failure is a warning, not a stop.
pub fn ensure_swap(root: &Path, tools: &Tools) -> Option<String> {
    let meminfo = std::fs::read_to_string(root.join("proc/meminfo")).ok()?;
    let total = mem_total(&meminfo)?;
    let swaps = std::fs::read_to_string(root.join("proc/swaps")).unwrap_or_default();
    if total >= TIGHT_BYTES || swap_active(&swaps) {
        return None;
    }
    let size = format!("{}M", total / 2 / (1 << 20));
    let result = (|| {
        let dev = tools.run(
            "zramctl",
            &["--find", "--size", &size, "--algorithm", "zstd"],
        )?;
        let dev = dev.trim().to_string();
        tools.run("mkswap", &[&dev])?;
        tools.run("swapon", &["--priority", "100", &dev])?;
        Ok::<_, crate::Error>(dev)
    })();
    Some(match result {
        Ok(dev) => format!(
            "memory is tight ({} MiB): zram swap of {size} on {dev}",
            total >> 20
        ),
        Err(e) => format!(
            "memory is tight ({} MiB) and zram swap failed: {e}",
            total >> 20
        ),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_memtotal_and_swaps() {
        assert_eq!(
            mem_total("MemTotal:        1014560 kB\nMemFree: 1 kB\n"),
            Some(1014560 * 1024)
        );
        assert!(!swap_active("Filename\tType\tSize\tUsed\tPriority\n"));
        assert!(swap_active(
            "Filename\tType\n/dev/zram0 partition 1 0 100\n"
        ));
    }
}
