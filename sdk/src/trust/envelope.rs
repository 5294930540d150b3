//! Decoding a `.minisig` file's four lines without trusting any of it.
//!
//! `minisign-verify` does not expose the algorithm or the key id of a signature, so the
//! second line is decoded here: 2 bytes algorithm (`ED` prehashed, `Ed` legacy), 8 bytes key
//! id, 64 bytes Ed25519 signature. Every failure is an error, never a panic.

use super::{TrustError, SIGNATURE_MAX_BYTES};
use base64::Engine as _;

/// The parts of a signature that are read before its key is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// `true` for prehashed (`ED`), `false` for legacy (`Ed`).
    pub prehashed: bool,
    /// The signing key's number, as stored (little-endian).
    pub key_id: [u8; 8],
}

const UNTRUSTED_PREFIX: &str = "untrusted comment: ";
const TRUSTED_PREFIX: &str = "trusted comment: ";

pub(crate) fn decode(text: &str) -> Result<Envelope, TrustError> {
    if text.len() as u64 > SIGNATURE_MAX_BYTES {
        return Err(TrustError::malformed(format!(
            "the signature is {} bytes; a minisign signature is under {SIGNATURE_MAX_BYTES}",
            text.len()
        )));
    }
    let mut lines: Vec<&str> = text.lines().collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let [untrusted, sig, trusted, global] = lines[..] else {
        return Err(TrustError::malformed(format!(
            "expected 4 lines (untrusted comment, signature, trusted comment, global signature), found {}",
            lines.len()
        )));
    };
    if !untrusted.starts_with(UNTRUSTED_PREFIX) {
        return Err(TrustError::malformed(format!(
            "line 1 does not start with `{UNTRUSTED_PREFIX}`"
        )));
    }
    let sig = decode_line(sig, 2, 74)?;
    if !trusted.starts_with(TRUSTED_PREFIX) {
        return Err(TrustError::malformed(format!(
            "line 3 does not start with `{TRUSTED_PREFIX}`"
        )));
    }
    decode_line(global, 4, 64)?;
    let prehashed = match [sig[0], sig[1]] {
        [b'E', b'D'] => true,
        [b'E', b'd'] => false,
        [a, b] => {
            return Err(TrustError::malformed(format!(
                "unknown signature algorithm 0x{a:02x}{b:02x} (minisign signatures use `ED`)"
            )))
        }
    };
    let mut key_id = [0u8; 8];
    key_id.copy_from_slice(&sig[2..10]);
    Ok(Envelope { prehashed, key_id })
}

fn decode_line(line: &str, number: usize, len: usize) -> Result<Vec<u8>, TrustError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|e| TrustError::malformed(format!("line {number} is not valid base64 ({e})")))?;
    if bytes.len() != len {
        return Err(TrustError::malformed(format!(
            "line {number} decodes to {} bytes, expected {len}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Key id as minisign prints it: the 8 bytes read as a little-endian u64, 16 uppercase hex digits.
pub(crate) fn key_id_hex(key_id: &[u8; 8]) -> String {
    format!("{:016X}", u64::from_le_bytes(*key_id))
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::outcome::RefusalReason;

    /// A syntactically valid signature with these header bytes (the signature bytes are junk).
    pub(crate) fn synthetic(algorithm: &[u8; 2], key_id: &[u8; 8], comment: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut line2 = algorithm.to_vec();
        line2.extend_from_slice(key_id);
        line2.extend_from_slice(&[7u8; 64]);
        format!(
            "untrusted comment: test\n{}\ntrusted comment: {comment}\n{}\n",
            b64.encode(&line2),
            b64.encode([9u8; 64])
        )
    }

    #[test]
    fn the_header_is_read_from_line_two() {
        let e = decode(&synthetic(b"ED", &[1, 2, 3, 4, 5, 6, 7, 8], "c")).unwrap();
        assert_eq!(
            e,
            Envelope {
                prehashed: true,
                key_id: [1, 2, 3, 4, 5, 6, 7, 8]
            }
        );
        assert_eq!(key_id_hex(&e.key_id), "0807060504030201");
        assert!(!decode(&synthetic(b"Ed", &[0; 8], "c")).unwrap().prehashed);
        let crlf = synthetic(b"ED", &[0; 8], "c").replace('\n', "\r\n");
        assert!(decode(&crlf).is_ok());
    }

    #[test]
    fn malformed_signatures_are_errors_not_panics() {
        let good = synthetic(b"ED", &[0; 8], "c");
        let lines: Vec<&str> = good.lines().collect();
        let cases = [
            String::new(),
            "\n\n\n\n".to_string(),
            good[..good.len() / 2].to_string(),
            lines[..3].join("\n"),
            format!("{good}extra line\n"),
            good.replacen("untrusted comment: ", "comment: ", 1),
            good.replacen("trusted comment: ", "trusted: ", 1),
            good.replacen(lines[1], &lines[1][..lines[1].len() - 4], 1),
            good.replacen(lines[1], "!!!not base64!!!", 1),
            good.replacen(lines[3], "AAAA", 1),
            synthetic(b"XY", &[0; 8], "c"),
            "x".repeat(1 << 20),
            String::from_utf8_lossy(&[0xff; 300]).into_owned(),
        ];
        for c in cases {
            let e = decode(&c).unwrap_err();
            assert_eq!(
                e.reason(),
                RefusalReason::MalformedSignature,
                "{c:.80?}: {e}"
            );
        }
    }
}
