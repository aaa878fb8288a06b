//! The Secret cache's values with their base64 text held as the bytes it encodes: three
//! quarters of the size, and the exact value back on every read.
//!
//! Most of what the cache keeps is base64: the private JWK members and PEM bodies in
//! `state.json`, the certificate in `tls.crt`, the access tokens, the public keys in the
//! registration answer (BENCHMARKS.md, "Secret cache: bytes per client"). A value is held as a
//! sequence of segments, each a kind byte, a LEB128 length and that many bytes:
//! - `LITERAL`: bytes as they are;
//! - `STANDARD`, `URL_SAFE`: what a run of base64 characters of one alphabet encodes, the
//!   run a multiple of 4 characters long and without padding (so it decodes and encodes back to
//!   the same text);
//! - `LINES`, `ESCAPED_LINES`: what PEM lines encode, each 64 characters and a line break, the
//!   break a newline or, inside a JSON string, the escape `\n`.
//!
//! Runs shorter than `MIN_RUN` (24) characters stay literal. A JSON escape (a backslash and the
//! character after it) is always literal. Pure functions; no I/O.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD},
};

/// Bytes as they are.
const LITERAL: u8 = 0;
/// Base64, standard alphabet (`+`, `/`).
const STANDARD: u8 = 1;
/// Base64, URL-safe alphabet (`-`, `_`).
const URL_SAFE: u8 = 2;
/// PEM lines ended by a newline.
const LINES: u8 = 3;
/// PEM lines ended by a JSON-escaped newline (`\n`, two characters).
const ESCAPED_LINES: u8 = 4;

/// The shortest run of base64 characters packed: 24 characters become 18 bytes and a two-byte
/// header, and split the literal around them (another two bytes).
const MIN_RUN: usize = 24;
/// Characters in a PEM line.
const LINE: usize = 64;

/// The alphabet a run is in, by its characters outside `A-Z`, `a-z`, `0-9`.
#[derive(Clone, Copy, PartialEq)]
enum Alphabet {
    /// Letters and digits only so far: the same text in both.
    Either,
    /// With `+` or `/`.
    Standard,
    /// With `-` or `_`.
    UrlSafe,
}

impl Alphabet {
    /// The alphabet of a run so far that goes on with `b`, `None` if `b` ends it.
    fn with(self, b: u8) -> Option<Self> {
        match (b, self) {
            (b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9', a) => Some(a),
            (b'+' | b'/', Self::Either | Self::Standard) => Some(Self::Standard),
            (b'-' | b'_', Self::Either | Self::UrlSafe) => Some(Self::UrlSafe),
            _ => None,
        }
    }
}

/// `value`, packed (see the module docs).
pub fn pack(value: &[u8]) -> Box<[u8]> {
    // A value with nothing to pack is one literal segment: a kind byte and up to 10 of length.
    let mut out = Vec::with_capacity(value.len() + 11);
    let mut literal_from = 0;
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'\\' {
            i += 2;
            continue;
        }
        if Alphabet::Either.with(value[i]).is_none() {
            i += 1;
            continue;
        }
        let before = &value[literal_from..i];
        let (lines, break_len) = lines_at(value, i);
        let block = LINE + break_len;
        let kind = if break_len == 1 { LINES } else { ESCAPED_LINES };
        if lines > 0
            && encoded(
                &mut out,
                before,
                kind,
                lines * (LINE / 4 * 3),
                (0..lines).map(|l| &value[i + l * block..i + l * block + LINE]),
            )
        {
            i += lines * block;
            literal_from = i;
            continue;
        }
        let (alphabet, end) = run_at(value, i);
        let len = (end - i) / 4 * 4;
        let kind = if alphabet == Alphabet::UrlSafe {
            URL_SAFE
        } else {
            STANDARD
        };
        if len >= MIN_RUN
            && encoded(
                &mut out,
                before,
                kind,
                len / 4 * 3,
                std::iter::once(&value[i..i + len]),
            )
        {
            i += len;
            literal_from = i;
        } else {
            i = end.max(i + 1);
        }
    }
    segment(&mut out, LITERAL, &value[literal_from.min(value.len())..]);
    out.into_boxed_slice()
}

/// The value `packed` was made from.
pub fn unpack(packed: &[u8]) -> Vec<u8> {
    let line_bytes = LINE / 4 * 3;
    let size = segments(packed)
        .map(|(kind, bytes)| match kind {
            STANDARD | URL_SAFE => base64::encoded_len(bytes.len(), false).unwrap_or(0),
            LINES => bytes.len() / line_bytes * (LINE + 1),
            ESCAPED_LINES => bytes.len() / line_bytes * (LINE + 2),
            _ => bytes.len(),
        })
        .sum();
    let mut out = Vec::with_capacity(size);
    for (kind, bytes) in segments(packed) {
        match kind {
            STANDARD => encode_onto(&STANDARD_NO_PAD, bytes, &mut out),
            URL_SAFE => encode_onto(&URL_SAFE_NO_PAD, bytes, &mut out),
            LINES | ESCAPED_LINES => {
                for line in bytes.chunks(line_bytes) {
                    encode_onto(&STANDARD_NO_PAD, line, &mut out);
                    out.extend_from_slice(if kind == LINES { b"\n" } else { b"\\n" });
                }
            }
            _ => out.extend_from_slice(bytes),
        }
    }
    out
}

/// The segments of `packed`: kind and bytes.
fn segments(packed: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = packed;
    std::iter::from_fn(move || {
        let (&kind, after) = rest.split_first()?;
        let (len, after) = read_len(after);
        let (bytes, after) = after.split_at(len.min(after.len()));
        rest = after;
        Some((kind, bytes))
    })
}

/// The number of whole PEM lines (64 standard-alphabet characters and the same line break) at
/// `i`, and the length of their break.
fn lines_at(value: &[u8], i: usize) -> (usize, usize) {
    let line_ok = |at: usize| {
        value
            .get(at..at + LINE)
            .is_some_and(|l| l.iter().all(|&b| Alphabet::Standard.with(b).is_some()))
    };
    let break_len = match value.get(i + LINE..) {
        Some([b'\n', ..]) => 1,
        Some([b'\\', b'n', ..]) => 2,
        _ => return (0, 0),
    };
    let brk: &[u8] = if break_len == 1 { b"\n" } else { b"\\n" };
    let mut lines = 0;
    let mut at = i;
    while line_ok(at) && value.get(at + LINE..at + LINE + break_len) == Some(brk) {
        lines += 1;
        at += LINE + break_len;
    }
    (lines, break_len)
}

/// The alphabet and end of the run of base64 characters at `i`.
fn run_at(value: &[u8], i: usize) -> (Alphabet, usize) {
    let mut alphabet = Alphabet::Either;
    let mut end = i;
    while let Some(a) = value.get(end).and_then(|&b| alphabet.with(b)) {
        alphabet = a;
        end += 1;
    }
    (alphabet, end)
}

/// Append the literal `before`, then a segment of `kind` holding the `len` bytes that `runs`
/// (each a multiple of 4 characters of the kind's alphabet) encode, decoded in place. Whole
/// quads of the alphabet always decode; were one refused, nothing is appended (`false`) and
/// the text stays literal rather than be held wrong.
fn encoded<'a>(
    out: &mut Vec<u8>,
    before: &[u8],
    kind: u8,
    len: usize,
    runs: impl Iterator<Item = &'a [u8]>,
) -> bool {
    let engine = if kind == URL_SAFE {
        &URL_SAFE_NO_PAD
    } else {
        &STANDARD_NO_PAD
    };
    let start = out.len();
    segment(out, LITERAL, before);
    header(out, kind, len);
    for run in runs {
        if engine.decode_vec(run, out).is_err() {
            out.truncate(start);
            return false;
        }
    }
    true
}

/// Append a segment (nothing for an empty literal).
fn segment(out: &mut Vec<u8>, kind: u8, bytes: &[u8]) {
    if kind == LITERAL && bytes.is_empty() {
        return;
    }
    header(out, kind, bytes.len());
    out.extend_from_slice(bytes);
}

/// Append a segment's kind and the LEB128 length of its bytes.
fn header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    let mut n = len;
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
}

/// A LEB128 length and what follows it.
fn read_len(mut rest: &[u8]) -> (usize, &[u8]) {
    let mut n = 0usize;
    let mut shift = 0u32;
    while let Some((&b, after)) = rest.split_first() {
        rest = after;
        n |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 || shift >= usize::BITS {
            break;
        }
    }
    (n, rest)
}

/// Append the base64 text of `bytes` (no padding) to `out`.
fn encode_onto(engine: &impl Engine, bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), false).unwrap_or(0),
        0,
    );
    if let Some(tail) = out.get_mut(start..)
        && engine.encode_slice(bytes, tail).is_err()
    {
        debug_assert!(false, "the text of a packed run did not fit its length");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A PEM certificate and key, as `tls.crt` and `state.json` hold them.
    fn pem() -> String {
        let c = rcgen::generate_simple_self_signed(vec!["client.example".to_owned()]).unwrap();
        format!("{}{}", c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn a_pem_certificate_comes_back_exactly_in_three_quarters_of_its_size_or_less() {
        let value = pem();
        let packed = pack(value.as_bytes());
        assert_eq!(unpack(&packed), value.as_bytes());
        assert!(
            packed.len() * 4 <= value.len() * 3 + 4 * 64,
            "{} bytes packed from {}",
            packed.len(),
            value.len()
        );
    }

    #[test]
    fn pem_lines_inside_a_json_string_are_packed_as_lines() {
        let value =
            serde_json::to_vec(&serde_json::json!({ "certPem": pem(), "kid": "k" })).unwrap();
        assert!(value.windows(2).any(|w| w == b"\\n"));
        let packed = pack(&value);
        assert_eq!(unpack(&packed), value);
        assert!(packed.contains(&ESCAPED_LINES));
        assert!(packed.len() * 4 <= value.len() * 3 + 4 * 64);
    }

    #[test]
    fn a_jwt_and_a_private_jwk_in_json_come_back_exactly_and_smaller() {
        let member = |n: usize| URL_SAFE_NO_PAD.encode((0..n).map(|i| i as u8).collect::<Vec<_>>());
        let jwk = serde_json::json!({ "kty": "RSA", "n": member(256), "d": member(256) });
        let state =
            serde_json::to_vec(&serde_json::json!({ "privateJwk": jwk.to_string() })).unwrap();
        let jwt = format!("{}.{}.{}", member(20), member(300), member(256));
        for value in [state, jwt.into_bytes()] {
            let packed = pack(&value);
            assert_eq!(unpack(&packed), value);
            assert!(
                packed.len() * 10 < value.len() * 8,
                "{} of {}",
                packed.len(),
                value.len()
            );
        }
    }

    #[test]
    fn short_words_and_empty_values_stay_as_they_are() {
        for value in [&b""[..], b"accounts", b"2026-12-04T21:30:00Z", b"a\\"] {
            let packed = pack(value);
            assert_eq!(unpack(&packed), value);
            assert!(packed.len() <= value.len() + 2);
        }
    }

    #[test]
    fn an_unpacked_value_is_allocated_at_its_exact_size() {
        let value = serde_json::to_vec(&serde_json::json!({ "certPem": pem() })).unwrap();
        for v in [value, pem().into_bytes(), b"short".to_vec()] {
            let back = unpack(&pack(&v));
            assert_eq!(back.capacity(), v.len());
        }
    }

    proptest! {
        #[test]
        fn any_bytes_come_back_exactly(value in proptest::collection::vec(any::<u8>(), 0..600)) {
            prop_assert_eq!(unpack(&pack(&value)), value);
        }

        #[test]
        fn any_mix_of_base64_runs_and_breaks_comes_back_exactly(
            parts in proptest::collection::vec(
                ("[A-Za-z0-9+/_-]{0,140}", prop::sample::select(vec!["", "\n", "\\n", "\\", ".", "=", "\"", "\u{e9}"])),
                0..12,
            )
        ) {
            let value: String = parts.iter().map(|(run, sep)| format!("{run}{sep}")).collect();
            prop_assert_eq!(unpack(&pack(value.as_bytes())), value.as_bytes());
        }

        #[test]
        fn any_pem_body_with_either_line_break_comes_back_exactly(
            der in proptest::collection::vec(any::<u8>(), 0..400),
            escaped in any::<bool>(),
            before in "[A-Za-z0-9+/]{0,3}",
        ) {
            let brk = if escaped { "\\n" } else { "\n" };
            let body = STANDARD_NO_PAD.encode(&der);
            let lines: String = body
                .as_bytes()
                .chunks(LINE)
                .map(|l| format!("{}{brk}", String::from_utf8_lossy(l)))
                .collect();
            let value = format!("-----BEGIN X-----{brk}{before}{lines}-----END X-----{brk}");
            prop_assert_eq!(unpack(&pack(value.as_bytes())), value.as_bytes());
        }
    }
}
