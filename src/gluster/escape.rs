//! Name escaping of the processed changelog form: libgfchangelog writes a
//! space, a newline and `%` in names as `%20`, `%0A` and `%25`, so that a
//! line splits on single spaces. Names are bytes; anything else passes
//! through unchanged.

use super::uuid::hex_val;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad escape at byte {offset} of {text:?}")]
pub struct EscapeError {
    pub offset: usize,
    pub text: String,
}

/// Appends `name` escaped to `out`.
pub fn escape_into(name: &[u8], out: &mut Vec<u8>) {
    for &b in name {
        match b {
            b' ' => out.extend_from_slice(b"%20"),
            b'\n' => out.extend_from_slice(b"%0A"),
            b'%' => out.extend_from_slice(b"%25"),
            _ => out.push(b),
        }
    }
}

pub fn escape(name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + 8);
    escape_into(name, &mut v);
    v
}

/// Reverses [`escape`]. Any `%XX` hex escape is decoded (either case); a `%`
/// not followed by two hex digits is an error.
pub fn unescape(s: &[u8]) -> Result<Vec<u8>, EscapeError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let v = s
                .get(i + 1..i + 3)
                .and_then(|h| Some(hex_val(h[0])? << 4 | hex_val(h[1])?))
                .ok_or_else(|| EscapeError { offset: i, text: String::from_utf8_lossy(s).into_owned() })?;
            out.push(v);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reference_example() {
        assert_eq!(escape(b"my file%"), b"my%20file%25");
        assert_eq!(escape(b"a\nb"), b"a%0Ab");
        assert_eq!(unescape(b"my%20file%25").unwrap(), b"my file%");
        assert_eq!(unescape(b"a%0ab").unwrap(), b"a\nb");
        assert!(unescape(b"bad%2").is_err());
        assert!(unescape(b"bad%zz").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(name in proptest::collection::vec(any::<u8>(), 0..64)) {
            let e = escape(&name);
            prop_assert!(!e.contains(&b' ') && !e.contains(&b'\n'));
            prop_assert_eq!(unescape(&e).unwrap(), name);
        }
    }
}
