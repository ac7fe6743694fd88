//! `nixos-lift user-data`: ready-to-paste cloud-init user-data for a config file.
//!
//! It renders `cloud-init/user-data.yaml.tftpl`, the same file Terraform examples pass to
//! `templatefile()`, so the console path and the Terraform path cannot drift apart. Only the
//! few template expressions that file uses are understood; anything else is an error.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use base64::Engine;

use crate::config::Arch;
use crate::provider::ProviderKind;
use crate::{Error, Result};

/// The cloud-init template, shared with Terraform's `templatefile()`.
pub const TEMPLATE: &str = include_str!("../cloud-init/user-data.yaml.tftpl");

/// Where releases publish the agent; `{arch}` is replaced on the VM by `uname -m`.
pub const DEFAULT_AGENT_URL: &str = concat!(
    "https://github.com/nixos-lift/nixos-lift/releases/download/v",
    env!("CARGO_PKG_VERSION"),
    "/nixos-lift-{arch}-linux"
);

/// Where cloud-init writes the config; `run` is started with `--config` pointing here.
pub const CONFIG_PATH: &str = "/etc/nixos-lift/config.yaml";

/// A pinned agent checksum, `ARCH=HEX` on the command line.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentPin {
    pub arch: Arch,
    pub sha256: String,
}

impl fmt::Debug for AgentPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.arch.as_str(), self.sha256)
    }
}

impl FromStr for AgentPin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (arch, hex) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not ARCH=SHA256, e.g. x86_64=<64 hex digits>"))?;
        // Debian's and the clouds' spellings too: people copy them from instance-type pages.
        let arch = match arch {
            "amd64" => Some(Arch::X86_64),
            other => Arch::from_uname(other),
        }
        .ok_or_else(|| format!("unknown architecture `{arch}` (x86_64 or aarch64)"))?;
        let sha256 = hex.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "the sha256 for {} must be 64 hex digits, got {} characters",
                arch.as_str(),
                hex.len()
            ));
        }
        Ok(Self { arch, sha256 })
    }
}

/// What goes into the template.
#[derive(Debug)]
pub struct UserData<'a> {
    /// The config file's text, written verbatim to [`CONFIG_PATH`].
    pub config: &'a str,
    pub agent_url: &'a str,
    pub pins: &'a [AgentPin],
}

impl UserData<'_> {
    fn pin(&self, arch: Arch) -> Result<&str> {
        let mut found = self.pins.iter().filter(|p| p.arch == arch);
        match (found.next(), found.next()) {
            (Some(a), Some(b)) if a.sha256 != b.sha256 => Err(Error::Usage(format!(
                "--agent-sha256 pins two different sums for {}",
                arch.as_str()
            ))),
            (pin, _) => Ok(pin.map_or("", |p| p.sha256.as_str())),
        }
    }

    /// The value of one template expression, or `None` if the template uses one we do not know.
    fn expression(&self, expr: &str) -> Result<Option<String>> {
        Ok(Some(match expr {
            "base64encode(config)" => base64::engine::general_purpose::STANDARD.encode(self.config),
            "agent_url" => self.agent_url.to_owned(),
            "agent_sha256_x86_64" => self.pin(Arch::X86_64)?.to_owned(),
            "agent_sha256_aarch64" => self.pin(Arch::Aarch64)?.to_owned(),
            _ => return Ok(None),
        }))
    }

    /// Checks the inputs the template interpolates into shell and YAML.
    fn validate(&self) -> Result<()> {
        if self.pins.is_empty() {
            return Err(Error::Usage(
                "no --agent-sha256 given: pin at least one agent, e.g. --agent-sha256 x86_64=<sha256 from SHA256SUMS>"
                    .into(),
            ));
        }
        validate_agent_url(self.agent_url)?;
        let pinned = [Arch::X86_64, Arch::Aarch64]
            .into_iter()
            .filter(|a| self.pins.iter().any(|p| p.arch == *a))
            .count();
        if pinned > 1 && !self.agent_url.contains("{arch}") {
            return Err(Error::Usage(format!(
                "--agent-url {} has no {{arch}} placeholder, so x86_64 and aarch64 would download the same file",
                self.agent_url
            )));
        }
        Ok(())
    }

    /// Renders the template: `${expr}` is replaced, `$${` is a literal `${` (Terraform's rules).
    pub fn render(&self) -> Result<String> {
        self.validate()?;
        render_template(TEMPLATE, |expr| self.expression(expr))
    }
}

fn validate_agent_url(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::Usage(format!("--agent-url {url}: not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(Error::Usage(format!(
            "--agent-url {url}: scheme must be https or http"
        )));
    }
    // The URL lands inside single quotes in the boot script.
    if let Some(bad) = url
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '\'' | '\\'))
    {
        return Err(Error::Usage(format!(
            "--agent-url {url}: contains {bad:?}, which the boot script cannot quote"
        )));
    }
    if parsed.scheme() == "http" {
        tracing::warn!("--agent-url uses plain http; the pinned sha256 still protects the agent");
    }
    Ok(())
}

/// Substitutes `${expr}` through `value`; fails on an unknown expression or a `%{` directive.
fn render_template(
    template: &str,
    value: impl Fn(&str) -> Result<Option<String>>,
) -> Result<String> {
    let mut out = String::with_capacity(template.len() + 1024);
    let mut rest = template;
    while let Some(at) = rest.find(['$', '%']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail
            .strip_prefix("$${")
            .or_else(|| tail.strip_prefix("%%{"))
        {
            out.push_str(&tail[1..2]);
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| {
                Error::Other("rendering user-data: unterminated ${ in template".into())
            })?;
            let expr = after[..end].trim();
            let rendered = value(expr)?.ok_or_else(|| {
                Error::Other(format!(
                    "rendering user-data: the template uses ${{{expr}}}, which nixos-lift does not know"
                ))
            })?;
            out.push_str(&rendered);
            rest = &after[end + 1..];
        } else if tail.starts_with("%{") {
            return Err(Error::Other(
                "rendering user-data: template directives (%{) are not supported".into(),
            ));
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// How a cloud counts toward its user-data limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The bytes cloud-init receives (after the API's base64 is undone).
    Decoded,
    /// Those bytes base64-encoded, as the cloud stores them.
    Base64,
    /// The text as pasted or passed to the API, unchanged.
    AsSent,
}

/// A provider's documented user-data limit (see cloud-init/README.md for sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub bytes: usize,
    pub basis: Basis,
    pub what: &'static str,
}

/// The user-data size limit of a cloud, when it documents one.
pub fn limit(provider: ProviderKind) -> Option<Limit> {
    let (bytes, basis, what) = match provider {
        ProviderKind::Aws => (16 * 1024, Basis::Decoded, "16 KiB before base64"),
        ProviderKind::Gcp => (256 * 1024, Basis::AsSent, "256 KiB per metadata value"),
        ProviderKind::Azure => (65_535, Basis::Decoded, "64 KiB of custom data, decoded"),
        ProviderKind::Hetzner => (32 * 1024, Basis::AsSent, "32 KiB"),
        ProviderKind::Digitalocean => (64 * 1024, Basis::AsSent, "64 KiB"),
        ProviderKind::Oracle => (
            32_000,
            Basis::Base64,
            "32000 bytes of metadata, base64, shared with other keys",
        ),
        ProviderKind::Openstack => (65_535, Basis::Base64, "65535 bytes, base64"),
        _ => return None,
    };
    Some(Limit { bytes, basis, what })
}

/// Whether gzip-then-base64 user-data reaches cloud-init intact on this cloud. The rest take
/// user-data as a text string, which cannot carry gzip bytes.
pub fn accepts_gzip_base64(provider: ProviderKind) -> bool {
    matches!(
        provider,
        ProviderKind::Aws | ProviderKind::Azure | ProviderKind::Gcp | ProviderKind::Oracle
    )
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// The size that counts toward `limit`, for `decoded` bytes delivered as `sent` bytes.
fn counted(limit: &Limit, decoded: usize, sent: usize) -> usize {
    match limit.basis {
        Basis::Decoded => decoded,
        Basis::Base64 => base64_len(decoded),
        Basis::AsSent => sent,
    }
}

fn gzip_base64(text: &str) -> Result<(usize, String)> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(text.as_bytes())
        .map_err(|e| Error::io("compressing user-data", e))?;
    let gz = encoder
        .finish()
        .map_err(|e| Error::io("compressing user-data", e))?;
    Ok((
        gz.len(),
        base64::engine::general_purpose::STANDARD.encode(&gz),
    ))
}

/// Reads the config file after the same check `config check` makes: a config the agent would
/// reject is refused here, before it is baked into a VM.
/// Reads the config, first refusing one that no VM with a pinned agent could use.
fn read_config(path: &Path, pins: &[AgentPin]) -> Result<String> {
    let valid = crate::config::Config::load(path)?.validate()?;
    let arches: Vec<Arch> = pins.iter().map(|p| p.arch).collect();
    crate::plan::guard::ConfigRefusals::of(&valid.installer).check(&arches, path)?;
    std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading config {}", path.display()), e))
}

/// Options of `nixos-lift user-data`, already parsed by clap.
#[derive(Debug)]
pub struct Options<'a> {
    pub config: &'a Path,
    pub agent_url: &'a str,
    pub pins: &'a [AgentPin],
    pub provider: Option<ProviderKind>,
    pub gzip_base64: bool,
}

/// Builds the user-data and returns what to print.
pub fn build(opts: &Options<'_>) -> Result<String> {
    let config = read_config(opts.config, opts.pins)?;
    let text = UserData {
        config: &config,
        agent_url: opts.agent_url,
        pins: opts.pins,
    }
    .render()?;
    let (decoded, output) = if opts.gzip_base64 {
        match opts.provider {
            Some(p) if accepts_gzip_base64(p) => {}
            Some(p) => {
                return Err(Error::Usage(format!(
                    "--gzip-base64: {p} is not known to hand gzip user-data to cloud-init intact; drop --gzip-base64"
                )))
            }
            None => {
                return Err(Error::Usage(
                    "--gzip-base64 needs --provider, to check that the cloud accepts it".into(),
                ))
            }
        }
        let (gz_len, b64) = gzip_base64(&text)?;
        (gz_len, b64 + "\n")
    } else {
        (text.len(), text)
    };
    if let Some(provider) = opts.provider {
        check_size(provider, decoded, output.trim_end().len(), opts.gzip_base64);
        if opts.gzip_base64 && provider == ProviderKind::Gcp {
            tracing::info!("gcp: also set the metadata key user-data-encoding=base64");
        }
    }
    Ok(output)
}

fn check_size(provider: ProviderKind, decoded: usize, sent: usize, gzipped: bool) {
    let Some(limit) = limit(provider) else {
        tracing::info!("{provider}: no documented user-data limit; {decoded} bytes");
        return;
    };
    let size = counted(&limit, decoded, sent);
    if size > limit.bytes {
        let hint = if !gzipped && accepts_gzip_base64(provider) {
            "; --gzip-base64 shrinks it"
        } else {
            "; shorten the config"
        };
        tracing::warn!(
            "user-data is {size} bytes, over {provider}'s limit of {} bytes ({}){hint}",
            limit.bytes,
            limit.what
        );
    } else {
        tracing::info!(
            "user-data is {size} of {provider}'s {} bytes ({})",
            limit.bytes,
            limit.what
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const X86: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const ARM: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn pins() -> Vec<AgentPin> {
        vec![
            format!("x86_64={X86}").parse().unwrap(),
            format!("arm64={ARM}").parse().unwrap(),
        ]
    }

    #[test]
    fn renders_every_expression_of_the_shared_template() {
        let pins = pins();
        let out = UserData {
            config: "flake: github:me/cfg#web\ntoken: s3cret\n",
            agent_url: "https://example.org/v1/nixos-lift-{arch}-linux",
            pins: &pins,
        }
        .render()
        .unwrap();
        assert!(out.starts_with("#cloud-config\n"));
        assert!(!out.contains("${"), "unrendered expression left in:\n{out}");
        assert!(out.contains(&format!("x86_64) want='{X86}'")));
        assert!(out.contains(&format!("aarch64) want='{ARM}'")));
        assert!(out.contains("'https://example.org/v1/nixos-lift-{arch}-linux'"));
        // The secret only travels base64-encoded inside write_files.
        assert!(!out.contains("s3cret"));
        let b64 = base64::engine::general_purpose::STANDARD
            .encode("flake: github:me/cfg#web\ntoken: s3cret\n");
        assert!(out.contains(&format!("content: {b64}\n")));
        let doc: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(doc["write_files"][0]["permissions"], "0600");
        assert_eq!(doc["write_files"][0]["path"], CONFIG_PATH);
    }

    #[test]
    fn an_unpinned_arch_renders_empty_and_the_script_refuses_it() {
        let pins = vec![format!("x86_64={X86}").parse().unwrap()];
        let out = UserData {
            config: "a: 1\n",
            agent_url: "https://example.org/agent",
            pins: &pins,
        }
        .render()
        .unwrap();
        assert!(out.contains("aarch64) want='' ;;"));
        assert!(out.contains("no sha256 is pinned"));
    }

    #[test]
    fn refuses_inputs_that_would_break_the_boot_script() {
        let pins = pins();
        for url in [
            "https://example.org/a'b-{arch}",
            "ftp://example.org/{arch}",
            "https://example.org/same-file",
            "not a url",
        ] {
            let err = UserData {
                config: "a: 1\n",
                agent_url: url,
                pins: &pins,
            }
            .render()
            .unwrap_err();
            assert_eq!(err.exit_code(), crate::error::exit::USAGE, "{url}: {err}");
        }
        let err = UserData {
            config: "a: 1\n",
            agent_url: DEFAULT_AGENT_URL,
            pins: &[],
        }
        .render()
        .unwrap_err();
        assert!(err.to_string().contains("--agent-sha256"));
    }

    #[test]
    fn parses_pins_and_rejects_bad_ones() {
        let pin: AgentPin = format!("amd64={}", X86.to_uppercase()).parse().unwrap();
        assert_eq!(pin.arch, Arch::X86_64);
        assert_eq!(pin.sha256, X86);
        assert!("x86_64".parse::<AgentPin>().is_err());
        assert!("riscv64=00".parse::<AgentPin>().is_err());
        assert!(format!("x86_64={}", &X86[1..]).parse::<AgentPin>().is_err());
        assert!(format!("x86_64={}g", &X86[1..])
            .parse::<AgentPin>()
            .is_err());
    }

    #[test]
    fn template_engine_follows_terraform_escapes_and_rejects_unknowns() {
        let value = |e: &str| Ok((e == "x").then(|| "X".to_owned()));
        assert_eq!(
            render_template("a${x}b $${x} %%{y} $HOME 5%", value).unwrap(),
            "aXb ${x} %{y} $HOME 5%"
        );
        assert!(render_template("${y}", value).is_err());
        assert!(render_template("%{ if x }", value).is_err());
        assert!(render_template("${x", value).is_err());
    }

    #[test]
    fn limits_count_what_each_cloud_counts() {
        let aws = limit(ProviderKind::Aws).unwrap();
        assert_eq!(counted(&aws, 16_384, 21_848), 16_384);
        let oci = limit(ProviderKind::Oracle).unwrap();
        assert_eq!(counted(&oci, 24_000, 24_000), 32_000);
        assert!(limit(ProviderKind::Vultr).is_none());
        assert!(accepts_gzip_base64(ProviderKind::Aws));
        assert!(!accepts_gzip_base64(ProviderKind::Hetzner));
    }

    #[test]
    fn gzip_base64_round_trips() {
        use std::io::Read;
        let (len, b64) = gzip_base64("#cloud-config\n").unwrap();
        let gz = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(gz.len(), len);
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "#cloud-config\n");
    }
}
