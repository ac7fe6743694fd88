//! The installer download's progress: a redrawn bar on an interactive terminal, otherwise one
//! log line per 10 %. A serial or hypervisor console is a tty too, but every redraw there
//! becomes another line in the provider's console log, so it gets the lines.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Device names of serial and hypervisor consoles (`/dev/ttyS0`, `/dev/hvc0`, …) and the
/// kernel console, which on a cloud VM is usually one of them.
const SERIAL_CONSOLES: &[&str] = &[
    "ttyS", "ttyAMA", "hvc", "xvc", "ttysclp", "ttyPS", "ttyUSB", "console",
];

/// `TERM` values of a console that cannot redraw in place cheaply: what systemd sets on serial
/// gettys (`vt220`) and the kernel console (`linux`), and the ones that mean "no cursor control".
const PLAIN_TERMS: &[&str] = &["dumb", "linux", "vt100", "vt102", "vt220", "unknown"];

/// Whether stderr gets a redrawn bar: only an interactive terminal that is not a serial or
/// hypervisor console and whose `TERM` can redraw.
pub(crate) fn draws_bar(stderr_is_tty: bool, tty: Option<&Path>, term: Option<&str>) -> bool {
    if !stderr_is_tty {
        return false;
    }
    let serial = tty
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .is_some_and(|name| SERIAL_CONSOLES.iter().any(|s| name.starts_with(s)));
    let plain_term = match term.map(str::trim) {
        None | Some("") => true,
        Some(t) => PLAIN_TERMS.contains(&t),
    };
    !serial && !plain_term
}

/// The device behind stderr (`/dev/ttyS0`), when there is one.
fn stderr_tty() -> Option<PathBuf> {
    std::fs::read_link("/proc/self/fd/2").ok()
}

pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    have: u64,
    total: Option<u64>,
    next_tenth: u64,
}

impl Progress {
    pub(crate) fn new() -> Self {
        let term = std::env::var("TERM").ok();
        let bar = draws_bar(
            std::io::stderr().is_terminal(),
            stderr_tty().as_deref(),
            term.as_deref(),
        )
        .then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self::with_bar(bar)
    }

    fn with_bar(bar: Option<indicatif::ProgressBar>) -> Self {
        Self {
            bar,
            have: 0,
            total: None,
            next_tenth: 1,
        }
    }

    /// The announced length of the whole download.
    pub(crate) fn set_total(&mut self, total: u64) {
        self.total = Some(total);
    }

    pub(crate) fn update(&mut self, more: u64) {
        for percent in self.advance(more) {
            tracing::info!(
                "downloading the installer: {percent} % ({} of {} MiB)",
                self.have >> 20,
                self.total.unwrap_or(0) >> 20
            );
        }
    }

    /// Counts `more` bytes; returns the multiples of 10 % passed by them (none with a bar, or
    /// without a known length), each once.
    fn advance(&mut self, more: u64) -> Vec<u64> {
        self.have += more;
        if let Some(bar) = &self.bar {
            if let Some(t) = self.total {
                bar.set_length(t);
            }
            bar.set_position(self.have);
            return Vec::new();
        }
        let Some(t) = self.total.filter(|t| *t > 0) else {
            return Vec::new();
        };
        let mut passed = Vec::new();
        while self.next_tenth <= 10 && self.have * 10 >= t * self.next_tenth {
            passed.push(self.next_tenth * 10);
            self.next_tenth += 1;
        }
        passed
    }

    pub(crate) fn finish(&self, have: u64) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        tracing::info!("downloaded the installer: {} MiB", have >> 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_and_hypervisor_consoles_get_lines_not_a_bar() {
        let xterm = Some("xterm-256color");
        for dev in [
            "/dev/ttyS0",
            "/dev/ttyS1",
            "/dev/ttyAMA0",
            "/dev/hvc0",
            "/dev/xvc0",
            "/dev/ttysclp0",
            "/dev/console",
        ] {
            assert!(!draws_bar(true, Some(Path::new(dev)), xterm), "{dev}");
        }
        assert!(draws_bar(true, Some(Path::new("/dev/pts/3")), xterm));
    }

    #[test]
    fn plain_terms_and_no_tty_get_lines() {
        let pts = Some(Path::new("/dev/pts/0"));
        for term in [
            None,
            Some(""),
            Some("dumb"),
            Some("linux"),
            Some("vt220"),
            Some("vt100"),
        ] {
            assert!(!draws_bar(true, pts, term), "{term:?}");
        }
        assert!(!draws_bar(false, pts, Some("xterm")), "not a tty");
        assert!(draws_bar(true, pts, Some("screen")));
        assert!(draws_bar(true, None, Some("xterm")));
    }

    #[test]
    fn lines_come_once_per_tenth_even_across_big_chunks() {
        let mut p = Progress::with_bar(None);
        assert_eq!(p.advance(100), Vec::<u64>::new(), "no length yet");
        p.set_total(1000);
        assert_eq!(p.advance(0), vec![10]);
        assert_eq!(p.advance(50), Vec::<u64>::new());
        assert_eq!(p.advance(49), Vec::<u64>::new());
        assert_eq!(p.advance(101), vec![20, 30]);
        assert_eq!(p.advance(699), vec![40, 50, 60, 70, 80, 90]);
        assert_eq!(p.advance(1), vec![100]);
        assert_eq!(p.advance(500), Vec::<u64>::new(), "100 % once");
    }
}
