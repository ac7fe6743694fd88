//! The one error type, with stable reasons and exit codes.

use crate::refusal::Refusal;

/// Exit codes, documented in the README. Mapped once, in `main`.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const REFUSED: u8 = 10;
    pub const CONFIG: u8 = 78;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A config file problem, located: `file:line:column: key: expected`.
    #[error(transparent)]
    ConfigFile(#[from] crate::config::ConfigError),
    /// One or more plan guards refused.
    #[error("refusing to {action}: {}", .refusals.iter().map(ToString::to_string)
        .collect::<Vec<_>>().join("; "))]
    Guards {
        action: &'static str,
        refusals: Vec<Refusal>,
    },
    /// A download whose sha256 is not the pinned one.
    #[error("{0}")]
    Verification(String),
    /// A guard refused an irreversible step at run time.
    #[error("refusing to {action}: {refusal}")]
    Refused {
        action: &'static str,
        refusal: Refusal,
    },
    /// A bad combination of arguments that clap cannot see; exits like a clap error.
    #[error("{0}")]
    Usage(String),
    /// A status the HTTP policy does not retry (a 4xx other than 404/408/429).
    #[error("{method} {url}: the server answered HTTP {status}")]
    Http {
        method: String,
        url: String,
        status: u16,
    },
    /// The overall deadline of a network operation ran out; `last` is why the last attempt
    /// failed, when one did (a timeout alone hides "connection refused").
    #[error("{what}: no answer within the {}s deadline{}", after.as_secs_f32(),
        last.as_deref().map(|l| format!(" (last attempt: {l})")).unwrap_or_default())]
    Timeout {
        what: String,
        after: std::time::Duration,
        last: Option<String>,
    },
    #[error("reading {url}: refusing a body larger than {limit} bytes")]
    BodyTooLarge { url: String, limit: u64 },
    /// A metadata service answered, but with something unusable; `reason` is stable
    /// (`metadata-invalid`, `metadata-disabled`, `metadata-unauthorized`, `metadata-mismatch`).
    #[error("reading {provider} metadata: {message}")]
    Metadata {
        provider: &'static str,
        reason: &'static str,
        message: String,
    },
    /// A program stage 1 or 2 runs exited unsuccessfully.
    #[error("running {program}: {status}")]
    Subprocess {
        program: String,
        status: std::process::ExitStatus,
    },
    /// Loading or jumping into the installer kernel failed: `call` is the syscall or tool,
    /// `errno` the kernel's answer when it gave one, `detail` what it means here.
    #[error("{call}: {detail}")]
    Kexec {
        call: &'static str,
        errno: Option<i32>,
        detail: String,
    },
    /// A network operation failed for good: its retries spent, or a failure retrying cannot
    /// fix (TLS, a resume the server answered wrongly, a file gone mid-download). `what` is the
    /// request (`GET url`) or the wait.
    #[error("{what}: {why}")]
    Network { what: String, why: String },
    /// The installer tarball is not one stage 1 can boot: a layout, manifest or size it does
    /// not accept. Nothing was booted; the staging is removed.
    #[error("{0}")]
    Installer(String),
    /// A value could not be written as JSON or YAML (`what` names the file or format).
    #[error("encoding {what}: {message}")]
    Encoding { what: &'static str, message: String },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn encoding(what: &'static str, error: impl std::fmt::Display) -> Self {
        Self::Encoding {
            what,
            message: error.to_string(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// `action` refused by one guard.
    pub fn refused(action: &'static str, refusal: Refusal) -> Self {
        Self::Refused { action, refusal }
    }

    /// A short stable code for status reports and tests.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::ConfigFile(_) => "config",
            Self::Refused { refusal, .. } => refusal.guard.as_str(),
            Self::Guards { .. } => "guard-refused",
            Self::Verification(_) => "sha256-mismatch",
            Self::Usage(_) => "usage",
            Self::Http { .. } => "http-status",
            Self::Timeout { .. } => "timeout",
            Self::BodyTooLarge { .. } => "body-too-large",
            Self::Metadata { reason, .. } => reason,
            Self::Subprocess { .. } => "subprocess",
            Self::Kexec { .. } => "kexec",
            Self::Encoding { .. } => "encoding",
            Self::Network { .. } => "network",
            Self::Installer(_) => "installer-invalid",
            Self::Other(_) => "failure",
        }
    }

    /// The kernel's errno behind the error, when there is one (logged as `errno=N`).
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kexec { errno, .. } => *errno,
            Self::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ConfigFile(_) => exit::CONFIG,
            Self::Refused { .. } | Self::Guards { .. } => exit::REFUSED,
            Self::Usage(_) => exit::USAGE,
            _ => exit::FAILURE,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
