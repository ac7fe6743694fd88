//! Unpacking the installer tarball as it streams in, and resolving its layout once the digest
//! matched: nixos-images' (`kexec/bzImage`, `kexec/initrd`, `kexec/run`, `kexec/kexec`) or
//! nixos-lift's (`kexec/manifest.json` naming the kernel, initrd, command line and `kexec`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use serde::Deserialize;

use crate::config::Arch;
use crate::handoff::MANIFEST_FILE;
use crate::refusal::{Guard, Refusal};
use crate::{Error, Result};

/// The directory both layouts keep everything in. Only regular files under it are written while
/// the tarball streams; the manifest cannot narrow that down then, because nix/installer sorts
/// the tarball by name and `kexec/manifest.json` arrives after the kernel and the initrd.
/// [`prune`] removes what the layout does not name once the digest matched.
const MEMBER_DIR: &str = "kexec";
/// More than any installer unpacks to (nixos-images' is ~470 MB); a gzip bomb stops here rather
/// than at a full tmpfs.
pub const MAX_UNPACKED: u64 = 4 << 30;

/// `kexec/manifest.json` in nixos-lift's own installer tarball, as `nix/installer` writes it.
/// Only the fields stage 1 needs are read; the build also records informational ones
/// (`name`, `system`, `init`, `kernel_params` as a list, ...), which a newer installer may extend.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Manifest {
    pub version: u32,
    pub kernel: String,
    pub initrd: String,
    /// The whole kernel command line, `init=` included.
    pub cmdline: String,
    #[serde(default)]
    pub kexec: Option<String>,
}

/// The unpacked installer, all paths inside the work directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Installer {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    /// The tarball's static kexec-tools, when it has one (fallback to `kexec_load`).
    pub kexec_tool: Option<PathBuf>,
    pub layout: Layout,
}

/// The two installer tarball layouts `fetch-installer` reads. In JSON and logs, its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// nixos-lift's own installer: `kexec/manifest.json`, and stage 2 in it.
    Manifest,
    /// nixos-images' upstream kexec tarball: `kexec/run`, no stage 2.
    NixosImages,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manifest => "nixos-lift manifest",
            Self::NixosImages => "nixos-images",
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Layout {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Installer {
    /// Whether the installer boots into nixos-lift's stage 2 (only nixos-lift's own layout
    /// does; nixos-images' upstream one would sit in the installer and install nothing).
    pub fn has_stage2(&self) -> bool {
        self.layout == Layout::Manifest
    }
}

/// Refuses an installer without nixos-lift's stage 2: kexec'ing into it would leave the machine
/// in a bare installer, its disk untouched, with nothing reporting. `fetch-installer` still
/// reports either layout; this is for the jump.
pub fn require_stage2(installer: &Installer) -> Result<()> {
    if installer.has_stage2() {
        return Ok(());
    }
    Err(Error::refused(
        "kexec",
        Refusal::new(
            Guard::InstallerStage2,
            format!(
                "nixos-images' upstream kexec layout (kexec/run, no {MANIFEST_FILE}), which \
                 would boot `{}` but has no nixos-lift stage 2, so nothing would install",
                installer.cmdline
            ),
            format!("nixos-lift's installer ({MANIFEST_FILE} and its stage-2 service)"),
            "use the installer released with nixos-lift (leave installer.url unset) or build \
             one with `nix build .#installer`",
        ),
    ))
}

/// Unpacks the gzip'd tar read from `input` into `dir`: regular files under `kexec/` whose
/// paths stay inside, nothing else. Reads `input` to its end, so that a caller hashing the same
/// bytes sees all of them, and checks the gzip trailer. Returns the bytes written.
pub fn unpack(input: impl BufRead, dir: &Path) -> Result<u64> {
    let ctx = |what: &str| format!("unpacking the installer: {what}");
    let mut archive = tar::Archive::new(MultiGzDecoder::new(input));
    let mut buf = vec![0u8; 256 << 10];
    let mut written = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| Error::io(ctx("reading the tarball"), e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io(ctx("reading the tarball"), e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| Error::io(ctx("reading a member's name"), e))?
            .into_owned();
        let Some(rel) = clean(&path).filter(|rel| rel.starts_with(MEMBER_DIR)) else {
            continue;
        };
        let out = dir.join(&rel);
        let name = rel.display().to_string();
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(ctx(&name), e))?;
        }
        let mut dest = File::create(&out).map_err(|e| Error::io(ctx(&name), e))?;
        loop {
            let n = entry.read(&mut buf).map_err(|e| Error::io(ctx(&name), e))?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > MAX_UNPACKED {
                return Err(Error::Installer(ctx(&format!(
                    "{name}: more than {} MiB; not an installer",
                    MAX_UNPACKED >> 20
                ))));
            }
            dest.write_all(&buf[..n])
                .map_err(|e| Error::io(ctx(&name), e))?;
        }
    }
    // The tar's end is not the file's: read the rest, which also checks the gzip CRC.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())
        .map_err(|e| Error::io(ctx("reading past the tar's end"), e))?;
    Ok(written)
}

/// A relative path without `..`, `.` or root; `None` for anything else.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// The layout unpacked in `dir`; call it only after the digest matched.
pub fn resolve(dir: &Path) -> Result<Installer> {
    let missing = |what: &str| {
        Error::Installer(format!(
            "unpacking the installer: {what} is missing; expected nixos-images' kexec/ layout or \
             kexec/manifest.json"
        ))
    };
    let inside = |rel: &str| -> Result<PathBuf> {
        let rel = clean(Path::new(rel)).ok_or_else(|| missing(rel))?;
        let path = dir.join(rel);
        path.is_file()
            .then_some(path.clone())
            .ok_or_else(|| missing(&path.display().to_string()))
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let installer = if manifest_path.is_file() {
        let text =
            std::fs::read(&manifest_path).map_err(|e| Error::io("reading the manifest", e))?;
        let m: Manifest = serde_json::from_slice(&text)
            .map_err(|e| Error::Installer(format!("reading {MANIFEST_FILE}: {e}")))?;
        if m.version != 1 {
            return Err(Error::Installer(format!(
                "{MANIFEST_FILE}: version {} (this agent reads 1)",
                m.version
            )));
        }
        Installer {
            kernel: inside(&m.kernel)?,
            initrd: inside(&m.initrd)?,
            cmdline: m.cmdline.trim().to_string(),
            kexec_tool: m.kexec.as_deref().map(inside).transpose()?,
            layout: Layout::Manifest,
        }
    } else {
        let run = std::fs::read_to_string(inside("kexec/run")?)
            .map_err(|e| Error::io("reading kexec/run", e))?;
        let cmdline = cmdline_from_run(&run).map_err(|why| {
            Error::Installer(format!(
                "reading the installer's kexec/run: cannot rebuild the kernel command line it \
                 passes to kexec: {why}"
            ))
        })?;
        Installer {
            kernel: inside("kexec/bzImage")?,
            initrd: inside("kexec/initrd")?,
            cmdline,
            kexec_tool: inside("kexec/kexec").ok(),
            layout: Layout::NixosImages,
        }
    };
    Ok(installer)
}

/// Removes the unpacked files `installer` does not use (nixos-images' `kexec/ip`, say), so that
/// only what stage 1 needs stays in RAM.
pub fn prune(dir: &Path, installer: &Installer) -> Result<()> {
    let keep: Vec<&Path> = [&installer.kernel, &installer.initrd]
        .into_iter()
        .chain(installer.kexec_tool.as_ref())
        .map(PathBuf::as_path)
        .collect();
    prune_dir(&dir.join(MEMBER_DIR), &keep)
}

fn prune_dir(dir: &Path, keep: &[&Path]) -> Result<()> {
    let ctx = || format!("tidying {}", dir.display());
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(ctx(), e))? {
        let path = entry.map_err(|e| Error::io(ctx(), e))?.path();
        if path.is_dir() {
            prune_dir(&path, keep)?;
        } else if !keep.contains(&path.as_path()) {
            std::fs::remove_file(&path).map_err(|e| Error::io(ctx(), e))?;
        }
    }
    Ok(())
}

/// The kernel command line nixos-images' `kexec/run` would pass to kexec, rebuilt by reading
/// the script as sh would: the word after `--command-line` (or `--append`), also inside an
/// `sh -c "…"` string, with the variables it uses taken from their assignments before it.
/// Upstream's script (`nix/kexec-installer/kexec-run.sh` after module.nix's `sed`) has
/// `init="/nix/store/…/init"`, `kernelParams="'console=tty0' 'console=ttyS0,115200' …"` (nixpkgs'
/// `escapeShellArgs`) and `sh -c "'…/kexec' --load … --command-line 'init=$init $kernelParams'"`;
/// older ones had the whole line literally. `Err` says what was not understood; never a part.
pub fn cmdline_from_run(script: &str) -> Result<String, String> {
    let line =
        find_cmdline(script)?.ok_or("no kexec --command-line (or --append) word in the script")?;
    if let Some(start) = line.find(UNKNOWN) {
        let what = line[start + 1..].split(UNKNOWN).next().unwrap_or_default();
        return Err(format!(
            "the command line uses {what}, which the script gives no fixed value before the kexec \
             (set only when it runs, or not at all)"
        ));
    }
    if let Some(placeholder) = placeholder(&line) {
        return Err(format!(
            "the command line still has the placeholder {placeholder}: module.nix's substitution \
             was not applied"
        ));
    }
    if !line.starts_with("init=/") {
        return Err(format!(
            "the command line {} does not start with init=/",
            shown(&line)
        ));
    }
    Ok(line)
}

/// Stands for a value the script only has when it runs (`$SCRIPT_DIR`, `$1`, `$(…)`), through
/// both quoting levels: `\0` + how it was written + `\0`. NUL cannot occur in shell text.
const UNKNOWN: char = '\0';

/// The script's variables so far: `Some` for a fixed value, `None` for one that depends on the
/// run (an expansion) or that is assigned different values in different places.
type Vars = HashMap<String, Option<String>>;

/// The command line in the shell `text`: the word after the first `--command-line`/`--append`,
/// with `text`'s own assignments before that command resolved.
fn find_cmdline(text: &str) -> Result<Option<String>, String> {
    let mut vars = Vars::new();
    let mut lexer = Lexer::new(text);
    while let Some(words) = lexer.command(&vars)? {
        if let Some(line) = cmdline_in(&words)? {
            return Ok(Some(line));
        }
        note_assignment(&mut vars, &words);
    }
    Ok(None)
}

/// The command-line word in one command's `words`, or in the string of its `sh -c`, which a new
/// shell splits again (without this one's variables: they are not exported).
fn cmdline_in(words: &[String]) -> Result<Option<String>, String> {
    for (i, word) in words.iter().enumerate() {
        for flag in ["--command-line", "--append"] {
            let (value, rest) = if word == flag {
                let value = words
                    .get(i + 1)
                    .ok_or_else(|| format!("{flag} is the command's last word"))?;
                (value.as_str(), &words[i + 2..])
            } else if let Some(value) = word.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
                (value, &words[i + 1..])
            } else {
                continue;
            };
            // Both known shapes end with the command line; words after it are what the
            // quoting cut off it (a kernel parameter with a space, say).
            if !rest.is_empty() {
                let rest: Vec<String> = rest.iter().map(|w| shown(w)).collect();
                return Err(format!(
                    "{flag}'s word {} is followed by {}: the script's quoting split the command \
                     line, so kexec would get only part of it",
                    shown(value),
                    rest.join(" ")
                ));
            }
            return Ok(Some(value.to_string()));
        }
    }
    let is_shell = |w: &String| matches!(w.rsplit('/').next(), Some("sh" | "bash" | "dash"));
    let string = words
        .iter()
        .position(|w| w == "-c")
        .filter(|&c| words[..c].iter().any(is_shell))
        .and_then(|c| words.get(c + 1));
    match string {
        Some(string) => find_cmdline(string).map_err(|e| format!("in the sh -c string: {e}")),
        None => Ok(None),
    }
}

/// Records `NAME=value` when it is a whole command (an sh assignment). A `NAME=` word followed
/// by others (an environment prefix, or a value this reader split) makes `NAME` unknown.
fn note_assignment(vars: &mut Vars, words: &[String]) {
    let mut words = words
        .iter()
        .skip_while(|w| matches!(w.as_str(), "then" | "else" | "do" | "{"));
    let Some((name, value)) = words
        .next()
        .and_then(|w| w.split_once('='))
        .filter(|(name, _)| is_name(name))
    else {
        return;
    };
    let value = (words.next().is_none() && !value.contains(UNKNOWN)).then(|| value.to_string());
    match vars.entry(name.to_string()) {
        Entry::Vacant(e) => {
            e.insert(value);
        }
        Entry::Occupied(mut e) if *e.get() != value => *e.get_mut() = None,
        Entry::Occupied(_) => {}
    }
}

fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c == '_' || c.is_ascii_alphabetic())
        && s.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// An unreplaced `@name@` (nixpkgs' substitution placeholder), as written.
fn placeholder(s: &str) -> Option<&str> {
    s.match_indices('@').find_map(|(at, _)| {
        let len = s[at + 1..].find('@')?;
        let name = &s[at + 1..at + 1 + len];
        is_name(name).then(|| &s[at..at + len + 2])
    })
}

/// A word for a message: quoted and escaped, so on one line, unknown values as written.
fn shown(word: &str) -> String {
    format!("{:?}", word.replace(UNKNOWN, ""))
}

/// A small POSIX sh reader: splits text into simple commands (at unquoted newlines, `;`, `&`,
/// `|`) and those into words, with quote removal, backslash-newline joining and parameter
/// expansion (field-split when unquoted) as sh does them. Redirections are dropped; no globbing,
/// here-documents or aliases; `$(…)`, `` `…` ``, `$1` and the like are unknown values.
struct Lexer {
    text: Vec<char>,
    at: usize,
    line: usize,
}

/// The words of the command being read.
#[derive(Default)]
struct Words {
    done: Vec<String>,
    word: String,
    /// A word is under way, even an empty one (`''`).
    started: bool,
    /// The next word is a redirection's target, not an argument.
    redirect: bool,
}

impl Words {
    fn push_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.started |= !s.is_empty();
    }

    fn end(&mut self) {
        if std::mem::take(&mut self.started) {
            let word = std::mem::take(&mut self.word);
            if !std::mem::take(&mut self.redirect) {
                self.done.push(word);
            }
        }
    }

    /// An unquoted expansion: split at blanks (the default IFS), joined to the text around it.
    fn split(&mut self, value: &str) {
        for (i, field) in value.split([' ', '\t', '\n']).enumerate() {
            if i > 0 {
                self.end();
            }
            self.push_str(field);
        }
    }
}

impl Lexer {
    fn new(text: &str) -> Self {
        Self {
            text: text.chars().collect(),
            at: 0,
            line: 1,
        }
    }

    fn peek(&self) -> Option<char> {
        self.text.get(self.at).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        self.line += usize::from(c == '\n');
        Some(c)
    }

    fn unclosed(&self, what: &str, line: usize) -> String {
        format!("a {what} opened on line {line} is never closed")
    }

    /// The next command's words, expanded with `vars`; `None` at the end of the text.
    fn command(&mut self, vars: &Vars) -> Result<Option<Vec<String>>, String> {
        let mut w = Words::default();
        while let Some(c) = self.next() {
            match c {
                ' ' | '\t' => w.end(),
                '\n' | ';' | '&' | '|' => {
                    w.end();
                    if !w.done.is_empty() {
                        return Ok(Some(w.done));
                    }
                }
                '#' if !w.started => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.next();
                    }
                }
                '<' | '>' => {
                    // `2>&1`, `>> file`: the fd number and the target are not arguments.
                    if w.word.chars().all(|c| c.is_ascii_digit()) {
                        w.word.clear();
                        w.started = false;
                    }
                    w.end();
                    while matches!(self.peek(), Some('<' | '>' | '&')) {
                        self.next();
                    }
                    w.redirect = true;
                }
                '\'' => {
                    w.started = true;
                    let s = self.single()?;
                    w.push_str(&s);
                }
                '"' => {
                    w.started = true;
                    self.double(&mut w.word, vars)?;
                }
                '\\' => match self.next() {
                    Some('\n') => {}
                    Some(c) => w.push_str(c.encode_utf8(&mut [0; 4])),
                    None => w.push_str("\\"),
                },
                '$' => {
                    let value = self.dollar(vars)?;
                    w.split(&value);
                }
                '`' => {
                    let value = self.backquote()?;
                    w.push_str(&value);
                }
                UNKNOWN => {
                    let value = self.marker();
                    w.push_str(&value);
                }
                c => w.push_str(c.encode_utf8(&mut [0; 4])),
            }
        }
        w.end();
        Ok((!w.done.is_empty()).then_some(w.done))
    }

    /// After `'`: the text up to the next `'`, as is.
    fn single(&mut self) -> Result<String, String> {
        let line = self.line;
        let mut s = String::new();
        loop {
            match self.next() {
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
                None => return Err(self.unclosed("'", line)),
            }
        }
    }

    /// After `"`: the text up to the closing `"` onto `out`, expanded, `\` escaping only
    /// `$`, `` ` ``, `"`, `\` and a newline.
    fn double(&mut self, out: &mut String, vars: &Vars) -> Result<(), String> {
        let line = self.line;
        loop {
            match self.next().ok_or_else(|| self.unclosed("\"", line))? {
                '"' => return Ok(()),
                '\\' => match self.next() {
                    Some('\n') | None => {}
                    Some(c @ ('$' | '`' | '"' | '\\')) => out.push(c),
                    Some(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                },
                '$' => out.push_str(&self.dollar(vars)?),
                '`' => out.push_str(&self.backquote()?),
                UNKNOWN => out.push_str(&self.marker()),
                c => out.push(c),
            }
        }
    }

    /// After `$`: the value of `$NAME` or `${NAME}`, an unknown value for anything else that
    /// expands (`$1`, `${NAME-…}`, `$(…)`), or `$` itself.
    fn dollar(&mut self, vars: &Vars) -> Result<String, String> {
        let unknown = |what: &str| format!("{UNKNOWN}{what}{UNKNOWN}");
        let lookup = |name: &str| match vars.get(name) {
            Some(Some(value)) => value.clone(),
            _ => unknown(&format!("${name}")),
        };
        match self.peek() {
            Some('{') => {
                let line = self.line;
                self.next();
                let mut inner = String::new();
                loop {
                    match self.next() {
                        Some('}') => break,
                        Some(c) => inner.push(c),
                        None => return Err(self.unclosed("${", line)),
                    }
                }
                if is_name(&inner) {
                    return Ok(lookup(&inner));
                }
                let name: String = inner
                    .chars()
                    .take_while(|&c| c == '_' || c.is_ascii_alphanumeric())
                    .collect();
                Ok(unknown(&format!("${{{name}…}}")))
            }
            Some('(') => {
                self.skip_parens()?;
                Ok(unknown("$(…)"))
            }
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                let mut name = String::new();
                while let Some(c) = self
                    .peek()
                    .filter(|&c| c == '_' || c.is_ascii_alphanumeric())
                {
                    name.push(c);
                    self.next();
                }
                Ok(lookup(&name))
            }
            Some(c) if c.is_ascii_digit() || "@*#?$!-".contains(c) => {
                self.next();
                Ok(unknown(&format!("${c}")))
            }
            _ => Ok("$".into()),
        }
    }

    /// At `$(`: past its matching `)`, quotes inside respected.
    fn skip_parens(&mut self) -> Result<(), String> {
        let line = self.line;
        let mut depth = 0;
        loop {
            match self.next() {
                Some('(') => depth += 1,
                Some(')') if depth == 1 => return Ok(()),
                Some(')') => depth -= 1,
                Some('\\') => {
                    self.next();
                }
                Some('\'') => {
                    self.single()?;
                }
                Some('"') => self.double(&mut String::new(), &Vars::new())?,
                Some(_) => {}
                None => return Err(self.unclosed("$(", line)),
            }
        }
    }

    /// After `` ` ``: past the closing one; a command's output, so unknown.
    fn backquote(&mut self) -> Result<String, String> {
        let line = self.line;
        loop {
            match self.next() {
                Some('`') => return Ok(format!("{UNKNOWN}`…`{UNKNOWN}")),
                Some('\\') => {
                    self.next();
                }
                Some(_) => {}
                None => return Err(self.unclosed("`", line)),
            }
        }
    }

    /// After an unknown value's opening `\0` (the outer shell expanded it into an `sh -c`
    /// string): the value, passed on unchanged.
    fn marker(&mut self) -> String {
        let mut s = String::from(UNKNOWN);
        while let Some(c) = self.next() {
            s.push(c);
            if c == UNKNOWN {
                break;
            }
        }
        s
    }
}

/// An arm64 kernel must be an uncompressed `Image` (magic `ARM\x64` at 0x38): both kexec
/// syscalls reject a compressed one with EINVAL, so refuse it here, before anything is loaded.
pub fn check_kernel(kernel: &Path, arch: Arch) -> Result<()> {
    if arch != Arch::Aarch64 {
        return Ok(());
    }
    let mut head = Vec::with_capacity(64);
    File::open(kernel)
        .and_then(|f| f.take(64).read_to_end(&mut head))
        .map_err(|e| Error::io("reading the installer kernel", e))?;
    if head.get(0x38..0x3c) == Some(b"ARM\x64".as_slice()) {
        return Ok(());
    }
    let found = match compression(&head) {
        Some(kind) => format!("a kernel compressed with {kind}"),
        None => "no arm64 Image header (no ARM\\x64 magic at offset 0x38)".to_string(),
    };
    Err(Error::refused(
        "kexec",
        Refusal::new(
            Guard::Arm64Image,
            format!(
                "{found} in {}",
                kernel.file_name().unwrap_or_default().to_string_lossy()
            ),
            "an uncompressed arm64 Image",
            "build the installer tarball with the kernel's Image, not Image.gz or vmlinuz.efi",
        ),
    ))
}

/// The compression a kernel file starts with, by its magic bytes.
fn compression(head: &[u8]) -> Option<&'static str> {
    const MAGICS: [(&[u8], &str); 5] = [
        (&[0x1f, 0x8b], "gzip"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
        (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
        (b"BZh", "bzip2"),
    ];
    // CONFIG_EFI_ZBOOT: a PE image ("MZ") whose payload is compressed ("zimg" at offset 4).
    if head.starts_with(b"MZ") && head.get(4..8) == Some(b"zimg".as_slice()) {
        return Some("EFI zboot");
    }
    MAGICS
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map(|(_, kind)| *kind)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// nixos-images' `kexec-run.sh` after module.nix's `sed`, trimmed to what shapes the kexec
    /// call; `params` is what `lib.escapeShellArgs` made of `boot.kernelParams`.
    fn upstream_run(params: &str) -> String {
        format!(
            r#"#!/bin/sh
set -eux
kexec_extra_flags=""
while [ $# -gt 0 ]; do
  case "$1" in
  --kexec-extra-flags)
    kexec_extra_flags="$2"
    shift
    ;;
  esac
  shift
done

# provided by nix
init="/nix/store/abc-nixos-system-nixos-installer/init"
kernelParams="{params}"

SCRIPT_DIR=$(dirname "$(readlink -f "$0")")
INITRD_TMP=$(TMPDIR=$SCRIPT_DIR mktemp -d)
"$SCRIPT_DIR/ip" -4 --json route > routes-v4.json
find . | cpio -o -H newc | gzip -9 >> "$SCRIPT_DIR/initrd"
kexecSyscallFlags=""
if printf "%s\n" "6.1" "$(uname -r)" | sort -c -V 2>&1; then
  kexecSyscallFlags="--kexec-syscall-auto"
fi

if ! sh -c "'$SCRIPT_DIR/kexec' --load '$SCRIPT_DIR/bzImage' \
  $kexecSyscallFlags \
  $kexec_extra_flags \
  --initrd='$SCRIPT_DIR/initrd' --no-checks \
  --command-line 'init=$init $kernelParams'"
then
  exit 1
fi
nohup sh -c "sleep 6 && '$SCRIPT_DIR/kexec' -e ${{kexec_extra_flags}}" &
"#
        )
    }

    const INIT: &str = "init=/nix/store/abc-nixos-system-nixos-installer/init";

    #[test]
    fn upstream_variable_form() {
        // escapeShellArgs quotes every `key=value` ('=' is not in its safe set), leaves `quiet`.
        let run = upstream_run("'console=tty0' 'console=ttyS0,115200' quiet 'zswap.enabled=1'");
        assert_eq!(
            cmdline_from_run(&run).unwrap(),
            format!("{INIT} console=tty0 console=ttyS0,115200 quiet zswap.enabled=1")
        );
        // A `"` in a parameter ends the assignment's double quotes: sh drops it, and so do we.
        let run = upstream_run(r#"'console=ttyS0,115200' 'dyndbg="+p"'"#);
        assert_eq!(
            cmdline_from_run(&run).unwrap(),
            format!("{INIT} console=ttyS0,115200 dyndbg=+p")
        );
        // `${init}` and `--append=` are read the same way.
        let run = "init='/nix/store/x/init'\nextra=loglevel=4\nsh -c \"kexec --load k --append='init=${init} '$extra\"\n";
        assert_eq!(
            cmdline_from_run(run).unwrap(),
            "init=/nix/store/x/init loglevel=4"
        );
    }

    #[test]
    fn a_parameter_the_script_splits_or_breaks_is_refused() {
        // `'foo=a b'` closes the inner single quotes, so sh -c hands kexec `… foo=a` and `b`.
        let err = cmdline_from_run(&upstream_run("'console=ttyS0,115200' 'foo=a b'")).unwrap_err();
        assert_eq!(
            err,
            format!(
                "in the sh -c string: --command-line's word \"{INIT} console=ttyS0,115200 foo=a\" \
                 is followed by \"b\": the script's quoting split the command line, so kexec \
                 would get only part of it"
            )
        );
        // escapeShellArg's `'\''` for a `'`: the inner quotes no longer pair up.
        let err = cmdline_from_run(&upstream_run(r"'console=tty0' 'it'\''s'")).unwrap_err();
        assert_eq!(
            err,
            "in the sh -c string: a ' opened on line 1 is never closed"
        );
    }

    #[test]
    fn older_literal_form() {
        let script = "#!/bin/sh\nset -eux\n\"$SCRIPT_DIR\"/kexec --load \"$SCRIPT_DIR\"/bzImage \\\n  --initrd=\"$INITRD_TMP/initrd\" --no-checks \\\n  --command-line \"init=/nix/store/abc-nixos-system/init nouveau.modeset=0 console=tty0 console=ttyS0,115200 root=fstab loglevel=4\"\n";
        assert_eq!(
            cmdline_from_run(script).unwrap(),
            "init=/nix/store/abc-nixos-system/init nouveau.modeset=0 console=tty0 console=ttyS0,115200 root=fstab loglevel=4"
        );
        // `--command-line=WORD`, redirections after it and a comment naming the flag before it.
        let script = "# kexec --command-line 'init=/wrong'\nkexec -l k --command-line=\"init=/nix/store/y/init console=ttyS0\" >/dev/null 2>&1 || exit 1\n";
        assert_eq!(
            cmdline_from_run(script).unwrap(),
            "init=/nix/store/y/init console=ttyS0"
        );
    }

    #[test]
    fn what_is_not_understood_is_refused() {
        assert_eq!(
            cmdline_from_run("#!/bin/sh\necho init=/nix/store/x/init\n").unwrap_err(),
            "no kexec --command-line (or --append) word in the script"
        );
        // A value given only at run time.
        let run =
            "flags=\"\"\nflags=\"$1\"\nkexec --load k --command-line \"init=/x/init $flags\"\n";
        assert_eq!(
            cmdline_from_run(run).unwrap_err(),
            "the command line uses $flags, which the script gives no fixed value before the \
             kexec (set only when it runs, or not at all)"
        );
        // A variable never assigned, and one assigned two different values.
        let run = "kexec --load k --command-line \"init=/x/init ${extra}\"\n";
        assert!(cmdline_from_run(run).unwrap_err().contains("uses $extra,"));
        let run = "p=a\nif x; then\n  p=b\nfi\nkexec -l k --command-line \"init=/x/init $p\"\n";
        assert!(cmdline_from_run(run).unwrap_err().contains("uses $p,"));
        // The script as it is in nixos-images' repository, before module.nix's `sed`.
        assert_eq!(
            cmdline_from_run(&upstream_run("@kernelParams@").replace(&INIT[5..], "@init@"))
                .unwrap_err(),
            "the command line still has the placeholder @init@: module.nix's substitution was \
             not applied"
        );
        assert_eq!(
            cmdline_from_run("kexec -l k --command-line 'console=ttyS0 init=/x/init'\n")
                .unwrap_err(),
            "the command line \"console=ttyS0 init=/x/init\" does not start with init=/"
        );
        assert_eq!(
            cmdline_from_run("kexec -l k --command-line\n").unwrap_err(),
            "--command-line is the command's last word"
        );
        assert_eq!(
            cmdline_from_run("kexec -l k --command-line \"init=/x/init\n").unwrap_err(),
            "a \" opened on line 1 is never closed"
        );
    }

    #[test]
    fn resolve_names_kexec_run_when_it_refuses() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("kexec")).unwrap();
        for f in ["bzImage", "initrd"] {
            std::fs::write(dir.path().join("kexec").join(f), f).unwrap();
        }
        std::fs::write(dir.path().join("kexec/run"), upstream_run("@kernelParams@")).unwrap();
        let err = resolve(dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            "reading the installer's kexec/run: cannot rebuild the kernel command line it passes \
             to kexec: the command line still has the placeholder @kernelParams@: module.nix's \
             substitution was not applied"
        );

        std::fs::write(
            dir.path().join("kexec/run"),
            upstream_run("'console=ttyS0,115200'"),
        )
        .unwrap();
        let installer = resolve(dir.path()).unwrap();
        assert_eq!(installer.cmdline, format!("{INIT} console=ttyS0,115200"));
        assert_eq!(installer.layout, Layout::NixosImages);
        assert!(!installer.has_stage2());
        let err = require_stage2(&installer).unwrap_err();
        assert_eq!(err.reason(), "installer-stage2");
        assert_eq!(err.exit_code(), crate::error::exit::REFUSED);
        assert_eq!(
            err.to_string(),
            format!(
                "refusing to kexec: installer-stage2: found nixos-images' upstream kexec layout \
                 (kexec/run, no kexec/manifest.json), which would boot `{INIT} \
                 console=ttyS0,115200` but has no nixos-lift stage 2, so nothing would install, \
                 needed nixos-lift's installer (kexec/manifest.json and its stage-2 service); way \
                 out: use the installer released with nixos-lift (leave installer.url unset) or \
                 build one with `nix build .#installer`"
            )
        );

        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            r#"{"version":1,"kernel":"kexec/bzImage","initrd":"kexec/initrd","cmdline":"init=/y/init"}"#,
        )
        .unwrap();
        let installer = resolve(dir.path()).unwrap();
        assert!(installer.has_stage2());
        assert!(require_stage2(&installer).is_ok());
    }

    #[test]
    fn paths_stay_inside() {
        assert_eq!(
            clean(Path::new("./kexec/initrd")),
            Some(PathBuf::from("kexec/initrd"))
        );
        assert_eq!(clean(Path::new("../etc/passwd")), None);
        assert_eq!(clean(Path::new("/etc/passwd")), None);
    }

    fn kernel_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bzImage");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn arm64_kernel_must_be_an_uncompressed_image() {
        let mut image = vec![0u8; 128];
        image[0x38..0x3c].copy_from_slice(b"ARM\x64");
        let (_d, path) = kernel_file(&image);
        assert!(check_kernel(&path, Arch::Aarch64).is_ok());

        let (_d, path) = kernel_file(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        let err = check_kernel(&path, Arch::Aarch64).unwrap_err();
        assert_eq!(err.reason(), "arm64-image");
        assert_eq!(err.exit_code(), crate::error::exit::REFUSED);
        let msg = err.to_string();
        assert!(
            msg.contains("found a kernel compressed with gzip in bzImage"),
            "{msg}"
        );
        assert!(msg.contains("needed an uncompressed arm64 Image"), "{msg}");
        assert!(msg.contains("way out: "), "{msg}");

        let mut zboot = b"MZ\0\0zimg".to_vec();
        zboot.resize(128, 0);
        let (_d, path) = kernel_file(&zboot);
        let msg = check_kernel(&path, Arch::Aarch64).unwrap_err().to_string();
        assert!(
            msg.contains("found a kernel compressed with EFI zboot"),
            "{msg}"
        );

        let (_d, path) = kernel_file(b"short");
        let msg = check_kernel(&path, Arch::Aarch64).unwrap_err().to_string();
        assert!(msg.contains("no arm64 Image header"), "{msg}");
    }

    #[test]
    fn other_arches_are_not_checked() {
        let (_d, path) = kernel_file(&[0x1f, 0x8b]);
        assert!(check_kernel(&path, Arch::X86_64).is_ok());
    }
}
