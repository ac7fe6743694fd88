//! What stderr is, for what may be written to it: ANSI colour and a redrawn progress bar need
//! an interactive terminal. A serial or hypervisor console is a tty too, but what reaches it
//! lands in the provider's console log (AWS `get-console-output`, GCP's serial port output,
//! `/var/log/cloud-init-output.log`), where escape sequences show raw and every redraw is
//! another line.

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

/// stderr as far as styling goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stderr {
    pub is_tty: bool,
    /// The device behind it (`/dev/pts/3`, `/dev/ttyS0`), when there is one.
    pub device: Option<PathBuf>,
    pub term: Option<String>,
    /// `NO_COLOR` set to anything but the empty string (<https://no-color.org>).
    pub no_color: bool,
}

impl Stderr {
    pub fn current() -> Self {
        Self {
            is_tty: std::io::stderr().is_terminal(),
            device: std::fs::read_link("/proc/self/fd/2").ok(),
            term: std::env::var("TERM").ok(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        }
    }

    /// An interactive terminal: a tty that is not a serial or hypervisor console.
    fn interactive(&self) -> bool {
        self.is_tty && !self.device.as_deref().is_some_and(is_serial_console)
    }

    /// Whether log lines may carry ANSI colour.
    pub fn colours(&self) -> bool {
        let dumb = matches!(
            self.term.as_deref().map(str::trim),
            None | Some("" | "dumb")
        );
        self.interactive() && !self.no_color && !dumb
    }

    /// Whether the download gets a redrawn bar instead of a line per 10 %.
    pub fn draws_bar(&self) -> bool {
        let plain_term = match self.term.as_deref().map(str::trim) {
            None | Some("") => true,
            Some(t) => PLAIN_TERMS.contains(&t),
        };
        self.interactive() && !plain_term
    }
}

fn is_serial_console(device: &Path) -> bool {
    device
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|name| SERIAL_CONSOLES.iter().any(|s| name.starts_with(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tty(device: &str, term: &str) -> Stderr {
        Stderr {
            is_tty: true,
            device: Some(PathBuf::from(device)),
            term: Some(term.to_string()),
            no_color: false,
        }
    }

    const CONSOLES: &[&str] = &[
        "/dev/ttyS0",
        "/dev/ttyS1",
        "/dev/ttyAMA0",
        "/dev/hvc0",
        "/dev/xvc0",
        "/dev/ttysclp0",
        "/dev/console",
    ];

    #[test]
    fn serial_and_hypervisor_consoles_get_no_colour_and_no_bar() {
        for dev in CONSOLES {
            let stderr = tty(dev, "xterm-256color");
            assert!(!stderr.colours(), "{dev}");
            assert!(!stderr.draws_bar(), "{dev}");
        }
        let pts = tty("/dev/pts/3", "xterm-256color");
        assert!(pts.colours() && pts.draws_bar());
    }

    #[test]
    fn no_color_and_dumb_terminals_get_no_colour() {
        let no_color = Stderr {
            no_color: true,
            ..tty("/dev/pts/3", "xterm")
        };
        assert!(!no_color.colours());
        assert!(!tty("/dev/pts/3", "dumb").colours());
        let no_term = Stderr {
            term: None,
            ..tty("/dev/pts/3", "xterm")
        };
        assert!(!no_term.colours());
        // A virtual terminal renders colour but is no place for a redrawn bar.
        let vt = tty("/dev/tty1", "linux");
        assert!(vt.colours() && !vt.draws_bar());
    }

    #[test]
    fn terminals_that_cannot_redraw_get_lines_not_a_bar() {
        for term in ["", "dumb", "linux", "vt220", "vt100"] {
            assert!(!tty("/dev/pts/0", term).draws_bar(), "{term:?}");
        }
        assert!(tty("/dev/pts/0", "screen").draws_bar());
        let no_device = Stderr {
            device: None,
            ..tty("/dev/pts/0", "xterm")
        };
        assert!(no_device.draws_bar() && no_device.colours());
    }

    #[test]
    fn pipes_and_files_get_neither() {
        let pipe = Stderr {
            is_tty: false,
            ..tty("/proc/self/fd/pipe:[1234]", "xterm")
        };
        assert!(!pipe.colours() && !pipe.draws_bar());
    }
}
