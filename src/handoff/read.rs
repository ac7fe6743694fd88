//! Reading a handoff back: stage 2 reads it to install, `handoff check` reads it the same way
//! and reports. The one place that knows how each handoff file is parsed and which are required.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde::de::DeserializeOwned;

use super::cpio::read_archive;
use super::payload::KexecRecord;
use super::*;
use crate::facts::{Facts, FACTS_VERSION};
use crate::plan::{Plan, PLAN_VERSION};
use crate::refusal::{Guard, Refusal};
use crate::{Error, Result};

/// Everything stage 2 needs from stage 1.
#[derive(Debug, Clone)]
pub struct Handoff {
    pub dir: PathBuf,
    pub plan: Plan,
    pub facts: Facts,
    pub secrets: Secrets,
    /// One OpenSSH public key per entry (plan keys first, then the file's, deduplicated).
    pub authorized_keys: Vec<String>,
}

impl Handoff {
    /// Reads `dir`. `plan.json` and `facts.json` are required and must carry this agent's
    /// schema versions; the others default to empty.
    pub fn read(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(refused(
                Guard::Handoff,
                format!("no handoff directory at {}", dir.display()),
                "the one stage 1 appends to the installer's initrd",
                "start the installer with `nixos-lift run`, or pass --handoff DIR",
            ));
        }
        let source = Source::dir(dir);
        Files::read(&source)
            .into_handoff(dir)
            .map_err(|(path, problem)| problem.refusal(&source.name(&path)))
    }

    /// The stock image's SSH host keys stage 1 handed over (only with `keep_host_keys`), by
    /// file name, sorted; the bytes stay a `Secret` (the private halves are keys).
    pub fn kept_host_keys(&self) -> Result<Vec<(String, Secret<Vec<u8>>)>> {
        let ctx = |what: &str| format!("reading the handoff's {what}");
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(ctx("folder"), e))?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                n.starts_with(HOST_KEY_PREFIX)
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            })
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let data =
                    std::fs::read(self.dir.join(&name)).map_err(|e| Error::io(ctx(&name), e))?;
                Ok((name, Secret::new(data)))
            })
            .collect()
    }
}

/// What is wrong with one handoff file. Never carries a file's contents: `secrets.json` holds
/// tokens, so a parse error keeps serde's class and position only.
#[derive(Debug, Clone)]
pub enum Problem {
    Missing,
    Corrupt {
        class: String,
        line: usize,
        column: usize,
    },
    Version {
        found: u32,
        needed: u32,
    },
    Unreadable(std::sync::Arc<std::io::Error>),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("missing"),
            Self::Corrupt {
                class,
                line,
                column,
            } => write!(f, "corrupt ({class} error at line {line} column {column})"),
            Self::Version { found, needed } => {
                write!(f, "schema version {found} (this agent reads {needed})")
            }
            Self::Unreadable(why) => write!(f, "unreadable: {why}"),
        }
    }
}

impl Problem {
    fn refusal(&self, file: &str) -> Error {
        let rerun = "rerun `nixos-lift run` in the stock image";
        let (guard, found, needed, way_out) = match self {
            Self::Missing => (
                Guard::Handoff,
                format!("no {file}"),
                "the file stage 1 writes".to_string(),
                rerun,
            ),
            Self::Corrupt {
                class,
                line,
                column,
            } => (
                Guard::Handoff,
                format!("a corrupt {file} ({class} error at line {line} column {column})"),
                "the JSON stage 1 writes".to_string(),
                rerun,
            ),
            Self::Version { found, needed } => (
                Guard::HandoffVersion,
                format!("{file} with schema version {found}"),
                format!("version {needed}"),
                "use the same nixos-lift release for stage 1 and the installer",
            ),
            Self::Unreadable(e) => {
                let source = std::io::Error::new(e.kind(), e.to_string());
                return Error::io(format!("reading {file}"), source);
            }
        };
        Error::refused("install", Refusal::new(guard, found, needed, way_out))
    }
}

type Verdict<T> = std::result::Result<T, Problem>;

/// Each handoff file read and parsed on its own, so a check can report every one.
/// Keys are paths relative to the initramfs root (`nixos-lift/plan.json`).
pub(crate) struct Files {
    pub plan: Verdict<Plan>,
    pub facts: Verdict<Facts>,
    pub secrets: Verdict<Option<Secrets>>,
    pub authorized_keys: Verdict<Option<String>>,
    pub kexec: Verdict<Option<KexecRecord>>,
}

pub(crate) fn own(file: &str) -> String {
    format!("{INITRD_DIR}/{file}")
}

impl Files {
    pub(crate) fn read(source: &Source) -> Self {
        let plan = required(source, PLAN_FILE).and_then(|p: Plan| {
            versioned(p.version, PLAN_VERSION)?;
            Ok(p)
        });
        let facts = required(source, FACTS_FILE).and_then(|f: Facts| {
            versioned(f.version, FACTS_VERSION)?;
            Ok(f)
        });
        let authorized_keys = source.read(&own(AUTHORIZED_KEYS_FILE)).and_then(|bytes| {
            bytes
                .map(|b| {
                    String::from_utf8(b).map_err(|_| {
                        unreadable(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "not UTF-8",
                        ))
                    })
                })
                .transpose()
        });
        Self {
            plan,
            facts,
            secrets: optional(source, SECRETS_FILE),
            authorized_keys,
            kexec: optional(source, KEXEC_FILE),
        }
    }

    /// Every file's verdict, in reading order (`Ok` for a file that is absent and optional).
    pub(crate) fn verdicts(&self) -> Vec<(String, Verdict<()>)> {
        fn unit<T>(v: &Verdict<T>) -> Verdict<()> {
            v.as_ref().map(|_| ()).map_err(Clone::clone)
        }
        vec![
            (own(PLAN_FILE), unit(&self.plan)),
            (own(FACTS_FILE), unit(&self.facts)),
            (own(SECRETS_FILE), unit(&self.secrets)),
            (own(AUTHORIZED_KEYS_FILE), unit(&self.authorized_keys)),
            (own(KEXEC_FILE), unit(&self.kexec)),
        ]
    }

    /// The handoff stage 2 works from, or the first file that stops it.
    fn into_handoff(self, dir: &Path) -> std::result::Result<Handoff, (String, Problem)> {
        // kexec.json is for the check only: stage 2 does not need it.
        fn at(file: &'static str) -> impl Fn(Problem) -> (String, Problem) {
            move |problem| (own(file), problem)
        }
        let plan = self.plan.map_err(at(PLAN_FILE))?;
        let facts = self.facts.map_err(at(FACTS_FILE))?;
        let secrets = self.secrets.map_err(at(SECRETS_FILE))?.unwrap_or_default();
        let file_keys = self
            .authorized_keys
            .map_err(at(AUTHORIZED_KEYS_FILE))?
            .unwrap_or_default();
        let mut authorized_keys: Vec<String> = Vec::new();
        let candidates = plan
            .ssh_authorized_keys
            .iter()
            .map(|k| k.as_str())
            .chain(file_keys.lines());
        for key in candidates.map(str::trim) {
            if !key.is_empty() && !key.starts_with('#') && !authorized_keys.iter().any(|k| k == key)
            {
                authorized_keys.push(key.to_string());
            }
        }
        Ok(Handoff {
            dir: dir.to_path_buf(),
            plan,
            facts,
            secrets,
            authorized_keys,
        })
    }
}

/// The writer's list of every file it put in the archive, with its mode.
pub(crate) fn read_index(source: &Source) -> Verdict<Vec<super::payload::IndexEntry>> {
    required(source, INDEX_FILE)
}

fn unreadable(e: std::io::Error) -> Problem {
    Problem::Unreadable(std::sync::Arc::new(e))
}

fn versioned(found: u32, needed: u32) -> Verdict<()> {
    if found == needed {
        Ok(())
    } else {
        Err(Problem::Version { found, needed })
    }
}

fn required<T: DeserializeOwned>(source: &Source, file: &str) -> Verdict<T> {
    optional(source, file)?.ok_or(Problem::Missing)
}

/// `None` when the file does not exist.
fn optional<T: DeserializeOwned>(source: &Source, file: &str) -> Verdict<Option<T>> {
    let Some(bytes) = source.read(&own(file))? else {
        return Ok(None);
    };
    // Only the error's class and position: serde's message can quote a value.
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Problem::Corrupt {
            class: format!("{:?}", e.classify()),
            line: e.line(),
            column: e.column(),
        })
}

fn refused(guard: Guard, found: String, needed: impl Into<String>, way_out: &str) -> Error {
    Error::refused("install", Refusal::new(guard, found, needed, way_out))
}

/// A file as found: its mode and size, without reading it.
pub(crate) struct Stat {
    pub mode: u32,
    pub size: u64,
}

/// Where a handoff is read from: a directory (the initramfs' `/nixos-lift`, or stage 2's copy),
/// or a payload archive's contents.
pub(crate) enum Source {
    Dir {
        own: PathBuf,
        /// The initramfs root, when `own` is its `nixos-lift` directory: root-level files
        /// (`addrs.json`, `ssh/`) are there. Stage 2's copy has only its own files.
        root: Option<PathBuf>,
    },
    Archive {
        path: PathBuf,
        /// Mode and bytes by path relative to the initramfs root; a later entry overrides an
        /// earlier one, as in the kernel's initramfs unpacker.
        entries: BTreeMap<String, (u32, Vec<u8>)>,
    },
}

impl Source {
    pub(crate) fn dir(dir: &Path) -> Self {
        let in_place = dir.file_name().is_some_and(|n| n == INITRD_DIR);
        Self::Dir {
            own: dir.to_path_buf(),
            root: dir.parent().filter(|_| in_place).map(Path::to_path_buf),
        }
    }

    /// Reads a payload archive file (gzip'd newc, possibly several concatenated).
    pub(crate) fn archive(path: &Path) -> Result<Self> {
        let context = || format!("reading handoff archive {}", path.display());
        let file = std::fs::File::open(path).map_err(|e| Error::io(context(), e))?;
        let mut bytes = Vec::new();
        MultiGzDecoder::new(file)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(context(), e))?;
        let mut entries = BTreeMap::new();
        let mut rest = &bytes[..];
        loop {
            while let [0, tail @ ..] = rest {
                rest = tail;
            }
            if rest.is_empty() {
                break;
            }
            for entry in read_archive(&mut rest).map_err(|e| Error::io(context(), e))? {
                if !entry.is_dir() {
                    entries.insert(entry.path, (entry.mode, entry.data));
                }
            }
        }
        Ok(Self::Archive {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Where the handoff was read from, for reports.
    pub(crate) fn location(&self) -> &Path {
        match self {
            Self::Dir { own, .. } => own,
            Self::Archive { path, .. } => path,
        }
    }

    /// Whether root-level files (outside `nixos-lift/`) can be seen from here.
    pub(crate) fn has_root_level(&self) -> bool {
        !matches!(self, Self::Dir { root: None, .. })
    }

    /// A file's name for messages: its path on disk, or `archive:path`.
    pub(crate) fn name(&self, path: &str) -> String {
        match self.local(path) {
            Some(local) => local.display().to_string(),
            None => format!("{}:{path}", self.location().display()),
        }
    }

    /// `path` on disk, for a directory source.
    fn local(&self, path: &str) -> Option<PathBuf> {
        let Self::Dir { own, root } = self else {
            return None;
        };
        match path.strip_prefix(&format!("{INITRD_DIR}/")) {
            Some(file) => Some(own.join(file)),
            None => root.as_ref().map(|r| r.join(path)),
        }
    }

    /// A regular file's bytes; `None` when it is not there.
    pub(crate) fn read(&self, path: &str) -> Verdict<Option<Vec<u8>>> {
        match self {
            Self::Archive { entries, .. } => Ok(entries.get(path).map(|(_, data)| data.clone())),
            Self::Dir { .. } => {
                let Some(local) = self.local(path) else {
                    return Ok(None);
                };
                match std::fs::read(local) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(unreadable(e)),
                }
            }
        }
    }

    /// The first `limit` bytes of a regular file.
    pub(crate) fn head(&self, path: &str, limit: u64) -> Option<Vec<u8>> {
        match self {
            Self::Archive { entries, .. } => entries
                .get(path)
                .map(|(_, data)| data[..data.len().min(limit as usize)].to_vec()),
            Self::Dir { .. } => {
                let mut data = Vec::new();
                let file = std::fs::File::open(self.local(path)?).ok()?;
                file.take(limit).read_to_end(&mut data).ok()?;
                Some(data)
            }
        }
    }

    /// Mode and size of a regular file; `None` when it is not there.
    pub(crate) fn stat(&self, path: &str) -> Option<Stat> {
        use std::os::unix::fs::PermissionsExt;
        match self {
            Self::Archive { entries, .. } => entries.get(path).map(|(mode, data)| Stat {
                mode: *mode,
                size: data.len() as u64,
            }),
            Self::Dir { .. } => {
                let meta = std::fs::metadata(self.local(path)?).ok()?;
                meta.is_file().then(|| Stat {
                    mode: meta.permissions().mode(),
                    size: meta.len(),
                })
            }
        }
    }
}
