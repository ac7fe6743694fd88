//! OpenSSH public keys, checked once for both sources: the config's `ssh.authorized_keys` and
//! the keys a cloud's metadata service hands out.

use ssh_key::PublicKey;

/// One checked `authorized_keys` line, kept as written (trimmed): an `ssh.authorized_keys`
/// entry, a metadata key, or one of root's. Its serde impls are the config's, with the other
/// newtypes (`config/values.rs`): in JSON the line, read back through this check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey(String);

impl TryFrom<String> for AuthorizedKey {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        ParsedKey::parse(&value)?;
        Ok(Self(value.trim().to_string()))
    }
}

impl AuthorizedKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One parsed `authorized_keys` line, as sshd(8) reads it (AUTHORIZED_KEYS FILE FORMAT): an
/// optional options field, then the key type, the base64 key and an optional comment.
#[derive(Debug, Clone)]
pub struct ParsedKey {
    /// The options field as written (`no-pty,from="10.0.0.0/8"`), if any.
    options: Option<String>,
    /// Each option's name, lowercased (sshd matches them case-insensitively).
    option_names: Vec<String>,
    key: PublicKey,
}

const NOT_A_KEY: &str =
    "expected an OpenSSH public key line like `ssh-ed25519 AAAAC3... user@host`";

/// sshd's options. An option not in this list makes sshd ignore the whole line.
const KNOWN_OPTIONS: &[&str] = &[
    "agent-forwarding",
    "cert-authority",
    "command",
    "environment",
    "expiry-time",
    "from",
    "no-agent-forwarding",
    "no-port-forwarding",
    "no-pty",
    "no-touch-required",
    "no-user-rc",
    "no-x11-forwarding",
    "permitlisten",
    "permitopen",
    "port-forwarding",
    "principals",
    "pty",
    "restrict",
    "touch-required",
    "tunnel",
    "user-rc",
    "verify-required",
    "x11-forwarding",
];

/// Options that make a key something other than a root login with a shell: a forced command
/// (cloud images put `command="echo 'Please login as the user \"debian\"…'"` on root's key
/// to point at the default user), no terminal, or a certificate authority rather than a key.
const NOT_A_LOGIN: &[&str] = &[
    "command",
    "restrict",
    "no-pty",
    "cert-authority",
    "principals",
];

impl ParsedKey {
    /// Parses one line; the error says what is wrong without echoing the line, which might be a
    /// private key pasted by mistake.
    pub fn parse(line: &str) -> Result<Self, String> {
        let line = line.trim();
        if line.contains("PRIVATE KEY") {
            return Err(
                "this is a private key; put its .pub half here and keep the private key off \
                 the config"
                    .to_string(),
            );
        }
        if line.is_empty() {
            return Err("expected an OpenSSH public key, found an empty line".to_string());
        }
        if line.contains('\n') {
            return Err(
                "expected one OpenSSH public key per list item, found several lines".to_string(),
            );
        }
        let not_a_key = || NOT_A_KEY.to_string();
        // As sshd does: the whole line as a key first, else an options field and then a key.
        if let Ok(key) = PublicKey::from_openssh(line) {
            return Ok(Self {
                options: None,
                option_names: Vec::new(),
                key,
            });
        }
        let (options, rest) = split_options(line)?;
        let key = PublicKey::from_openssh(rest.trim_start()).map_err(|_| not_a_key())?;
        let option_names = parse_options(options)?;
        Ok(Self {
            options: Some(options.to_string()),
            option_names,
            key,
        })
    }

    /// The first option that makes this key something other than a plain root login
    /// (`command`, `restrict`, `no-pty`, `cert-authority`, `principals`), if any.
    pub fn restriction(&self) -> Option<&str> {
        self.option_names
            .iter()
            .find(|n| NOT_A_LOGIN.contains(&n.as_str()))
            .map(String::as_str)
    }

    pub fn key_data(&self) -> &ssh_key::public::KeyData {
        self.key.key_data()
    }

    /// The line in canonical form: the options field as written, then the key and comment.
    pub fn to_line(&self) -> Option<String> {
        let key = self.key.to_openssh().ok()?;
        Some(match &self.options {
            Some(options) => format!("{options} {key}"),
            None => key,
        })
    }
}

/// Splits the options field off the front of `line`: it ends at the first blank outside double
/// quotes; inside quotes `\"` is a literal quote (sshd's rule).
fn split_options(line: &str) -> Result<(&str, &str), String> {
    let mut from = 0;
    while let Some(found) = line[from..].find([' ', '\t', '"']) {
        let at = from + found;
        if !line[at..].starts_with('"') {
            return Ok((&line[..at], &line[at..]));
        }
        let close = closing_quote(&line[at + 1..]).ok_or_else(|| {
            "the options before the key have an unterminated quoted string".to_string()
        })?;
        from = at + 1 + close + 1;
    }
    Err(NOT_A_KEY.to_string())
}

/// The names of the comma-separated options in `field`: each `name` or `name="value"`, commas
/// inside quotes belonging to the value. An option sshd does not know is an error, as in sshd.
fn parse_options(field: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = field;
    loop {
        let end = rest.find([',', '=']).unwrap_or(rest.len());
        let name = rest[..end].to_ascii_lowercase();
        if !KNOWN_OPTIONS.contains(&name.as_str()) {
            return Err(format!(
                "unknown option {:?} before the key (sshd would ignore this line)",
                truncate(&name)
            ));
        }
        rest = &rest[end..];
        if let Some(value) = rest.strip_prefix('=') {
            let Some(quoted) = value.strip_prefix('"') else {
                return Err(format!(
                    "the value of option {name} is not in double quotes"
                ));
            };
            let close = closing_quote(quoted)
                .ok_or_else(|| format!("the value of option {name} has no closing quote"))?;
            rest = &quoted[close + 1..];
        }
        names.push(name);
        match rest.strip_prefix(',') {
            Some(next) if !next.is_empty() => rest = next,
            None if rest.is_empty() => return Ok(names),
            _ => return Err("malformed options before the key".to_string()),
        }
    }
}

/// The index of the quote ending a quoted value (`\"` does not end it).
fn closing_quote(s: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// At most 32 characters of an option name for an error message.
fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

/// Checks one `authorized_keys` line (see [`ParsedKey::parse`]).
pub fn check_authorized_key(line: &str) -> Result<(), String> {
    ParsedKey::parse(line).map(|_| ())
}

/// The keys an image or a metadata service offers for root that nixos-lift carries into NixOS:
/// valid lines without an option that makes them something other than a root login. A
/// malformed line is dropped with a warning; a restricted key (the forced-command root key of
/// Debian and Ubuntu cloud images) is dropped with an info note, since its owner did not mean it
/// as a root login and NixOS would otherwise get it as one or keep the forced command. Keys
/// with other options (`from=`, `no-port-forwarding`) keep them. Neither log line echoes a key.
pub fn keep_valid(keys: impl IntoIterator<Item = String>, source: &str) -> Vec<AuthorizedKey> {
    keep_parsed(keys, source)
        .into_iter()
        .map(|(line, _)| AuthorizedKey(line))
        .collect()
}

fn keep_parsed(keys: impl IntoIterator<Item = String>, source: &str) -> Vec<(String, ParsedKey)> {
    keys.into_iter()
        .enumerate()
        .filter_map(|(index, key)| match ParsedKey::parse(&key) {
            Ok(parsed) => match parsed.restriction() {
                Some(option) => {
                    tracing::info!(
                        "not carrying over SSH key {index} from {source}: its {option} option \
                         restricts it, so it is not a root login (cloud images use such a key to \
                         point at their default user)"
                    );
                    None
                }
                None => Some((key.trim().to_string(), parsed)),
            },
            Err(why) => {
                tracing::warn!("ignoring SSH key {index} from {source}: {why}");
                None
            }
        })
        .collect()
}

/// Keys from a metadata service, ready for `authorized_keys`: filtered by [`keep_valid`], in
/// canonical form (options kept), and a key whose material repeats an earlier one dropped (the
/// first comment wins).
pub fn normalise(keys: impl IntoIterator<Item = String>, source: &str) -> Vec<AuthorizedKey> {
    let mut seen: Vec<ssh_key::public::KeyData> = Vec::new();
    let mut out = Vec::new();
    for (_, key) in keep_parsed(keys, source) {
        if seen.contains(key.key_data()) {
            continue;
        }
        seen.push(key.key_data().clone());
        if let Some(line) = key.to_line() {
            out.push(AuthorizedKey(line));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lines(keys: Vec<AuthorizedKey>) -> Vec<String> {
        keys.iter().map(|k| k.as_str().to_string()).collect()
    }

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEunXUWoE3A6zk86TPr42nbDznvqip66kPipFRzqqkr4 me@laptop";

    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCh5/yjJyl1QytVsfzC/y5SP3SNobbkSXkL1tAcRNOfsNtApSMHOBkudtzUlO8oP8lUNgRH4kZLxyVKETxQCh/k= ci";

    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDopFilb0KEsJBpmTqNEw83CnnfX9BuCqPjfaqQoR6gFgElRiHboRUcQSeVr05W4j2sSWGDb9G7QGEj1YuVXR4el6jP4/64WOnNwubz/rAHLj0qWePUqbA63Q22z17uHRPVx6Oac7gAFZB9wP2XmhmWXh1RPit+6KKyFm7KEXyg9w== test@rsa";

    /// What cloud-init (`disable_root: true`, the default) writes before root's key on a stock
    /// Debian or Ubuntu image.
    fn cloud_init_root(user: &str, key: &str) -> String {
        format!(
            "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command=\"echo 'Please \
             login as the user \\\"{user}\\\" rather than the user \\\"root\\\".';echo;sleep 10;exit \
             142\" {key}"
        )
    }

    #[test]
    fn the_cloud_init_root_line_parses_and_is_restricted() {
        let debian = cloud_init_root("debian", ED25519);
        assert!(
            debian.contains(r#"command="echo 'Please login as the user \"debian\" rather"#),
            "{debian}"
        );
        let ubuntu = cloud_init_root("ubuntu", RSA);
        for line in [&debian, &ubuntu] {
            let key = ParsedKey::parse(line).unwrap();
            assert_eq!(key.restriction(), Some("command"), "{line}");
            assert_eq!(check_authorized_key(line), Ok(()));
        }
        assert_eq!(
            lines(keep_valid([debian, ubuntu], "test")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn restricting_options_are_recognised_whatever_their_case_and_place() {
        for line in [
            format!("restrict,command=\"uptime\" {ED25519}"),
            format!("restrict {ED25519}"),
            format!("NO-PTY {ED25519}"),
            format!("from=\"10.0.0.0/8\",command=\"/usr/bin/backup --to \\\"x,y\\\"\" {RSA}"),
            format!("cert-authority,principals=\"root,admin\" {ECDSA}"),
        ] {
            let key = ParsedKey::parse(&line).unwrap();
            assert!(key.restriction().is_some(), "{line}");
        }
    }

    #[test]
    fn harmless_options_are_kept_with_the_key() {
        let from = format!("from=\"10.0.0.0/8,192.168.1.*\" {RSA}");
        let no_fwd = format!("no-port-forwarding,no-agent-forwarding {ED25519}");
        for line in [&from, &no_fwd] {
            assert_eq!(
                ParsedKey::parse(line).unwrap().restriction(),
                None,
                "{line}"
            );
        }
        assert_eq!(
            lines(keep_valid(
                [from.clone(), no_fwd.clone(), ECDSA.to_string()],
                "test"
            )),
            vec![from, no_fwd, ECDSA.to_string()]
        );
    }

    #[test]
    fn malformed_options_are_refused_with_a_reason() {
        for (line, why) in [
            (
                format!("command=\"echo hi {ED25519}"),
                "unterminated quoted string",
            ),
            (format!("command=echo {ED25519}"), "not in double quotes"),
            (
                format!("no-such-option {ED25519}"),
                "unknown option \"no-such-option\"",
            ),
            (
                format!("no-pty,,from=\"x\" {ED25519}"),
                "unknown option \"\"",
            ),
            (format!("no-pty, {ED25519}"), "malformed options"),
            (format!("command=\"x\"y {ED25519}"), "malformed options"),
            (
                "no-pty ssh-ed25519 AAAA".to_string(),
                "expected an OpenSSH public key",
            ),
        ] {
            let err = check_authorized_key(&line).err().unwrap_or_default();
            assert!(err.contains(why), "{line}: {err}");
            assert!(
                !err.contains("AAAAIEunXUWo"),
                "the key is not echoed: {err}"
            );
        }
    }

    #[test]
    fn accepts_real_keys_with_options_and_comments() {
        assert_eq!(check_authorized_key(ED25519), Ok(()));
        assert_eq!(check_authorized_key(ECDSA), Ok(()));
        assert_eq!(check_authorized_key(RSA), Ok(()));
        let with_options = format!("no-port-forwarding,from=\"10.0.0.0/8\" {ED25519}");
        assert_eq!(check_authorized_key(&with_options), Ok(()));
        let spaced_comment = format!("{ED25519} with a spaced comment");
        assert_eq!(check_authorized_key(&spaced_comment), Ok(()));
    }

    #[test]
    fn refuses_garbage_truncated_and_private_keys() {
        for bad in [
            "",
            "ssh-ed25519",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHV2",
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIHV2o0o4qOzUVx4f1tJ1fXn3Wc5v0lJ5m0Y8v8oVb1cX",
            "not a key",
        ] {
            assert!(check_authorized_key(bad).is_err(), "{bad:?}");
        }
        let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
        let err = check_authorized_key(private).err().unwrap_or_default();
        assert!(err.contains("this is a private key"), "{err}");
        assert!(!err.contains("b3BlbnNzaC1rZXktdjEAAAAA"));
    }

    #[test]
    fn keep_valid_drops_only_the_bad_ones() {
        let kept = keep_valid([ED25519.to_string(), "junk".to_string()], "test");
        assert_eq!(lines(kept), vec![ED25519.to_string()]);
    }

    #[test]
    fn normalise_keeps_harmless_options_skips_restricted_keys_and_drops_repeats() {
        let with_options = format!("from=\"10.0.0.0/8\" {ED25519}");
        let other_comment = ED25519.replace("me@laptop", "again");
        let keys = normalise(
            [
                format!("no-pty {RSA}"),
                with_options.clone(),
                other_comment,
                "junk".to_string(),
                ECDSA.to_string(),
            ],
            "test",
        );
        assert_eq!(lines(keys), vec![with_options, ECDSA.to_string()]);
    }
}
