//! Finds the line of a dotted key in block-style YAML, for errors found after parsing
//! (when serde no longer knows where a value came from).

/// 1-based line and column of the last key of `path` (`installer.sha256`), if the file writes it
/// in block style. Flow style (`{a: 1}`) is not followed; the caller then reports no location.
pub(crate) fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    locate_nth(text, path, 0)
}

/// Like [`locate`], for the `nth` (0-based) time the last key appears in its mapping: a
/// duplicate key is reported where it is repeated.
pub(crate) fn locate_nth(text: &str, path: &str, nth: usize) -> Option<(usize, usize)> {
    let mut found = None;
    let mut parent_indent: Option<usize> = None;
    let mut start = 0;
    let lines: Vec<&str> = text.lines().collect();
    let segments: Vec<&str> = path.split('.').collect();
    for (depth, segment) in segments.iter().enumerate() {
        let mut skip = if depth + 1 == segments.len() { nth } else { 0 };
        let mut hit = None;
        // Keys of one mapping share the indent of its first key.
        let mut level = None;
        for (index, line) in lines.iter().enumerate().skip(start) {
            let content = line.trim_start();
            if content.is_empty() || content.starts_with('#') || content.starts_with("---") {
                continue;
            }
            let indent = line.len() - content.len();
            if parent_indent.is_some_and(|parent| indent <= parent) {
                break;
            }
            if *level.get_or_insert(indent) != indent {
                continue;
            }
            if key_of(content) == Some(*segment) {
                if skip == 0 {
                    hit = Some((index, indent));
                    break;
                }
                skip -= 1;
            }
        }
        let (index, indent) = hit?;
        found = Some((index + 1, indent + 1));
        parent_indent = Some(indent);
        start = index + 1;
    }
    found
}

fn key_of(content: &str) -> Option<&str> {
    let (key, _) = content.split_once(':')?;
    let key = key.trim_end();
    let key = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
        .unwrap_or(key);
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "version: 1\n# comment: x\nreport:\n  webhook_url: x\ninstaller:\n  url: u\n  sha256:\n    x86_64: abc\nsha256: top\n";

    #[test]
    fn finds_nested_keys_inside_their_parent_only() {
        assert_eq!(locate(DOC, "version"), Some((1, 1)));
        assert_eq!(locate(DOC, "installer.sha256"), Some((7, 3)));
        assert_eq!(locate(DOC, "installer.sha256.x86_64"), Some((8, 5)));
        assert_eq!(locate(DOC, "sha256"), Some((9, 1)));
        assert_eq!(locate(DOC, "report.url"), None);
        assert_eq!(locate(DOC, "missing"), None);
        assert_eq!(locate_nth(DOC, "installer.url", 1), None);
        assert_eq!(locate_nth("a: 1\nb: 2\na: 3\n", "a", 1), Some((3, 1)));
    }
}
