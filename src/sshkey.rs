//! OpenSSH public keys, checked once for both sources: the config's `ssh.authorized_keys` and
//! the keys a cloud's metadata service hands out.

use std::str::FromStr;

use ssh_key::authorized_keys::Entry;

/// Checks one `authorized_keys` line: optional options, a key type, base64 key data that decodes
/// to a key of that type, and an optional comment. The error says what is wrong without echoing
/// the line, which might be a private key pasted by mistake.
pub fn check_authorized_key(line: &str) -> Result<(), String> {
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
    Entry::from_str(line).map(|_| ()).map_err(|_| {
        "expected an OpenSSH public key line like `ssh-ed25519 AAAAC3... user@host`".to_string()
    })
}

/// Keeps the keys that pass [`check_authorized_key`], logging (without the key) each one dropped.
/// For keys from a metadata service, where one bad entry should not cost the others.
pub fn keep_valid(keys: impl IntoIterator<Item = String>, source: &str) -> Vec<String> {
    keys.into_iter()
        .enumerate()
        .filter_map(|(index, key)| match check_authorized_key(&key) {
            Ok(()) => Some(key.trim().to_string()),
            Err(why) => {
                tracing::warn!("ignoring SSH key {index} from {source}: {why}");
                None
            }
        })
        .collect()
}

/// Keys from a metadata service, ready for `authorized_keys`: each checked by
/// [`check_authorized_key`] (bad ones dropped and logged), options stripped, and a key whose
/// material repeats an earlier one dropped (the first comment wins).
pub fn normalise(keys: impl IntoIterator<Item = String>, source: &str) -> Vec<String> {
    let mut seen: Vec<ssh_key::public::KeyData> = Vec::new();
    let mut out = Vec::new();
    for key in keep_valid(keys, source) {
        let Ok(entry) = Entry::from_str(&key) else {
            continue;
        };
        let public = entry.public_key();
        if seen.contains(public.key_data()) {
            continue;
        }
        seen.push(public.key_data().clone());
        if let Ok(line) = public.to_openssh() {
            out.push(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEunXUWoE3A6zk86TPr42nbDznvqip66kPipFRzqqkr4 me@laptop";

    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCh5/yjJyl1QytVsfzC/y5SP3SNobbkSXkL1tAcRNOfsNtApSMHOBkudtzUlO8oP8lUNgRH4kZLxyVKETxQCh/k= ci";

    #[test]
    fn accepts_real_keys_with_options_and_comments() {
        assert_eq!(check_authorized_key(ED25519), Ok(()));
        assert_eq!(check_authorized_key(ECDSA), Ok(()));
        let with_options = format!("no-port-forwarding,from=\"10.0.0.0/8\" {ED25519}");
        assert_eq!(check_authorized_key(&with_options), Ok(()));
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
        assert_eq!(kept, vec![ED25519.to_string()]);
    }

    #[test]
    fn normalise_strips_options_and_drops_repeated_keys() {
        let with_options = format!("no-pty,from=\"10.0.0.0/8\" {ED25519}");
        let other_comment = ED25519.replace("me@laptop", "again");
        let keys = normalise(
            [
                with_options,
                other_comment,
                "junk".to_string(),
                ECDSA.to_string(),
            ],
            "test",
        );
        assert_eq!(keys, vec![ED25519.to_string(), ECDSA.to_string()]);
    }
}
