//! Running the installer's tools (`nix`, the disko script, `nixos-install`): a clean
//! environment, every output line into the install log, bounded retries of transient fetch
//! failures.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::report::LineSink;
use crate::{Error, Result};

/// Lines the failure banner shows.
pub const TAIL_LINES: usize = 20;
const ATTEMPTS: u32 = 3;

/// Variables children inherit; everything else is dropped, so nothing secret leaks in.
const INHERITED_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZDIR", "TERM"];

/// Output that means a download failed for a reason that may pass.
const TRANSIENT: [&str; 9] = [
    "unable to download",
    "Couldn't resolve host",
    "Could not resolve host",
    "Connection timed out",
    "Connection reset",
    "Timeout was reached",
    "HTTP error 50",
    "HTTP error 429",
    "Failed to connect",
];

/// A failed download the server refused on purpose (401, 403, 404): retrying cannot help.
fn is_transient(line: &str) -> bool {
    let refused = line
        .split("HTTP error 4")
        .skip(1)
        .any(|rest| !rest.starts_with("08") && !rest.starts_with("29"));
    !refused && TRANSIENT.iter().any(|p| line.contains(p))
}

/// The install log: a file (copied to the installed system) and the tail for the banner.
pub struct InstallLog {
    file: Option<File>,
    path: Option<PathBuf>,
    tail: VecDeque<String>,
}

impl InstallLog {
    pub fn create(path: &Path) -> Self {
        let file = File::create(path).ok();
        Self {
            path: file.as_ref().map(|_| path.to_path_buf()),
            file,
            tail: VecDeque::new(),
        }
    }

    pub fn push(&mut self, line: &str) {
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{line}");
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
    }

    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// A shared handle, usable as a [`LineSink`] of the reporter.
#[derive(Clone)]
pub struct SharedLog(pub Arc<Mutex<InstallLog>>);

impl SharedLog {
    pub fn new(log: InstallLog) -> Self {
        Self(Arc::new(Mutex::new(log)))
    }

    pub fn push(&self, line: &str) {
        if let Ok(mut l) = self.0.lock() {
            l.push(line);
        }
    }

    pub fn tail(&self) -> Vec<String> {
        self.0.lock().map(|l| l.tail()).unwrap_or_default()
    }
}

impl LineSink for SharedLog {
    fn write_line(&mut self, line: &str) {
        self.push(line);
    }
}

/// Runs tools with the private Nix configuration and the install log.
#[derive(Clone)]
pub struct Tools {
    log: SharedLog,
    extra_env: Vec<(String, String)>,
    retry_pause: Duration,
}

impl Tools {
    /// `nix_conf`: the private nix.conf (access tokens); children find it by path, never by
    /// value.
    pub fn new(log: SharedLog, nix_conf: Option<&Path>) -> Self {
        let mut extra_env = Vec::new();
        if let Some(conf) = nix_conf {
            extra_env.push(("NIX_USER_CONF_FILES".into(), conf.display().to_string()));
        }
        Self {
            log,
            extra_env,
            retry_pause: Duration::from_secs(5),
        }
    }

    /// One more variable for the children (a path such as `TMPDIR`, never a secret).
    pub fn with_env(mut self, key: &str, value: &Path) -> Self {
        self.extra_env
            .push((key.to_string(), value.display().to_string()));
        self
    }

    pub fn with_retry_pause(mut self, pause: Duration) -> Self {
        self.retry_pause = pause;
        self
    }

    /// Runs `program args`, retrying transient fetch failures; returns stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut attempt = 1;
        loop {
            match self.run_once(program, args) {
                Ok(out) => return Ok(out),
                Err((err, transient)) if transient && attempt < ATTEMPTS => {
                    self.log.push(&format!(
                        "nixos-lift: {program}: transient failure (attempt {attempt}/{ATTEMPTS}), retrying: {err}"
                    ));
                    std::thread::sleep(self.retry_pause * attempt);
                    attempt += 1;
                }
                Err((err, _)) => return Err(err),
            }
        }
    }

    fn run_once(&self, program: &str, args: &[&str]) -> std::result::Result<String, (Error, bool)> {
        self.log.push(&format!("$ {program} {}", args.join(" ")));
        tracing::info!(program, ?args, "running");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in INHERITED_ENV {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        if std::env::var_os("HOME").is_none() {
            cmd.env("HOME", "/root");
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| (Error::io(format!("starting {program}"), e), false))?;
        let stderr = child.stderr.take();
        let log = self.log.clone();
        let err_reader = std::thread::spawn(move || {
            let mut transient = false;
            if let Some(stderr) = stderr {
                for line in BufReader::new(stderr)
                    .lines()
                    .map_while(std::io::Result::ok)
                {
                    transient |= is_transient(&line);
                    tracing::info!("{line}");
                    log.push(&line);
                }
            }
            transient
        });
        let mut stdout = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        for line in stdout.lines() {
            self.log.push(line);
        }
        let status = child
            .wait()
            .map_err(|e| (Error::io(format!("waiting for {program}"), e), false))?;
        let transient = err_reader.join().unwrap_or(false);
        if status.success() {
            Ok(stdout)
        } else {
            Err((
                Error::Subprocess {
                    program: program.to_string(),
                    status,
                },
                transient,
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn tools(dir: &Path) -> (Tools, SharedLog) {
        let log = SharedLog::new(InstallLog::create(&dir.join("install.log")));
        (
            Tools::new(log.clone(), None).with_retry_pause(Duration::from_millis(1)),
            log,
        )
    }

    #[test]
    fn captures_stdout_and_logs_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let (t, log) = tools(dir.path());
        let out = t.run("sh", &["-c", "echo out; echo err >&2"]).unwrap();
        assert_eq!(out, "out\n");
        assert!(log.tail().contains(&"err".to_string()));
    }

    #[test]
    fn retries_only_transient_failures() {
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = tools(dir.path());
        let count = dir.path().join("count");
        let script = format!(
            "echo x >> {c}; [ $(wc -l < {c}) -ge 3 ] && exit 0; echo 'error: unable to download' >&2; exit 1",
            c = count.display()
        );
        t.run("sh", &["-c", &script]).unwrap();
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 3);

        std::fs::remove_file(&count).unwrap();
        let script = format!(
            "echo x >> {}; echo 'error: syntax error' >&2; exit 1",
            count.display()
        );
        assert!(t.run("sh", &["-c", &script]).is_err());
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1);
    }

    #[test]
    fn refusals_by_the_server_are_not_transient() {
        let line = "error: unable to download 'http://c/nix-cache-info': HTTP error 401";
        assert!(!is_transient(line));
        assert!(is_transient(&line.replace("401", "429")));
        assert!(is_transient(&line.replace("401", "503")));
    }

    #[test]
    fn children_get_a_clean_environment() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nix.conf");
        let log = SharedLog::new(InstallLog::create(&dir.path().join("log")));
        let t = Tools::new(log, Some(&conf));
        // cargo sets this for the test process; the child must not see it.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let out = t.run("env", &[]).unwrap();
        assert!(out.contains(&format!("NIX_USER_CONF_FILES={}", conf.display())));
        assert!(!out.contains("CARGO_MANIFEST_DIR"), "{out}");
    }
}
