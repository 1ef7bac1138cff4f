//! The scheduled full pass's comparison: what the whole live pass changed in the mirror that the
//! journal had not named.

use std::collections::HashSet;

use crate::capture::scan;

/// The entries of a whole pass's itemized output (`%i %n` lines) the journal did not name in
/// `expected`: what it missed. A deletion counts as named when its directory is (the event
/// names the directory's change of names) or when a directory above it is deleted too (its
/// removal or move out names only that directory); hard links are left out (the journal names
/// the file by the name that changed).
pub fn missed(itemized: &str, expected: &HashSet<Vec<u8>>) -> Vec<String> {
    let lines: Vec<(&str, Vec<u8>)> = itemized
        .lines()
        .filter(|line| line.len() >= 13 && line.is_char_boundary(11))
        .filter(|line| line.as_bytes()[11] == b' ')
        .map(|line| (&line[..11], &line[12..]))
        .filter(|(code, _)| matches!(code.as_bytes()[0], b'<' | b'>' | b'c' | b'.' | b'*'))
        .map(|(code, name)| {
            let name = unescape(name.trim_end_matches('/'));
            (code, if name == b"." { Vec::new() } else { name })
        })
        .collect();
    let deleted: HashSet<&[u8]> = lines
        .iter()
        .filter(|(code, _)| code.starts_with("*deleting"))
        .map(|(_, path)| &path[..])
        .collect();
    let mut missed = Vec::new();
    for (code, path) in &lines {
        let mut named = expected.contains(path);
        if code.starts_with("*deleting") {
            named |= scan::parent(path).is_some_and(|dir| expected.contains(dir));
            let mut above = scan::parent(path);
            while let Some(dir) = above {
                named |= deleted.contains(dir);
                above = scan::parent(dir);
            }
        }
        if !named {
            missed.push(String::from_utf8_lossy(path).into_owned());
        }
    }
    missed
}

/// rsync's `\#ooo` escapes (octal) of bytes it does not print as they are.
fn unescape(name: &str) -> Vec<u8> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i..i + 5).filter(|b| {
            b[0] == b'\\' && b[1] == b'#' && b[2..].iter().all(|c| (b'0'..=b'7').contains(c))
        });
        match octal {
            Some(b) => {
                out.push((b[2] - b'0') * 64 + (b[3] - b'0') * 8 + (b[4] - b'0'));
                i += 5;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_entries_are_those_the_journal_did_not_name() {
        let expected: HashSet<Vec<u8>> = ["a/changed", "gone-dir", "", "new"]
            .map(|p| p.as_bytes().to_vec())
            .into();
        let itemized = "Number of files: 3\n\
            >f.st...... a/changed\n\
            >f..t...... a/silent\n\
            *deleting   gone-dir/deep/x\n\
            *deleting   gone-dir/deep/\n\
            *deleting   gone-dir/\n\
            *deleting   elsewhere/y\n\
            .d..t...... ./\n\
            cd+++++++++ new/\n\
            hf+++++++++ a/link => a/changed\n\
            >f+++++++++ odd\\#012name\n";
        assert_eq!(
            missed(itemized, &expected),
            ["a/silent", "elsewhere/y", "odd\nname"]
        );
    }
}
