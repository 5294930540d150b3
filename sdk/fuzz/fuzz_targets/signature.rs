//! `signature`: arbitrary bytes as a `.minisig` signature file of a fixed plugin, checked by
//! `TrustStore::verify` against one fixed trusted key (the envelope decoder, minisign
//! decoding and verification, the trusted-comment parser, name / expiry / digest checks), and
//! the same text through `parse_trusted_comment` and the public key line parser.
//!
//! The key pair was made once with `abkit keygen --unencrypted` and the secret key thrown
//! away; the seed corpus holds signatures it made over `PLUGIN` (see README.md).
#![no_main]

use abkit::internals::{parse_trusted_comment, signature_text};
use abkit::TrustConfig;
use abkit::{SignedMetadata, TrustStore};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

/// The trusted minisign public key (key id B34C0776479FDBA0).
const PUBLIC_KEY: &str = "RWSg259HdgdMsxmeGLaPV9gbU8VsvWrE4j33l8stsk6FhhrDW00aE2LV";
/// The plugin bytes every signature is checked against.
const PLUGIN: &[u8] = b"abkit fuzz plugin bytes\n";
/// Its SHA-256, as signed in the seeds.
const PLUGIN_SHA256: &str = "a48cb1b944f4368498cc907f3a590b087839e19dee32188d864fd56c62381dda";
/// The configured plugin name.
const NAME: &str = "fuzzplugin";
/// "Now" for expiry checks: 2026-01-01T00:00:00Z.
const NOW_SECS: u64 = 1_767_225_600;

static STORE: LazyLock<TrustStore> = LazyLock::new(|| {
    let trust = TrustConfig::default().with_public_keys(vec![PUBLIC_KEY.to_string()]);
    TrustStore::from_config(&trust).expect("the fixed public key is valid")
});

/// The canonical v1 text of parsed metadata: the strict parser accepts nothing else.
fn canonical(m: &SignedMetadata) -> String {
    let mut s = format!(
        "abkit-plugin v1 name={} version={} sha256={}",
        m.name,
        m.version,
        m.sha256_hex()
    );
    if let Some(e) = m.expires_utc() {
        s.push_str(" expires=");
        s.push_str(&e);
    }
    s
}

fn check_comment(comment: &str) {
    match parse_trusted_comment(comment) {
        Ok(p) => {
            let m = SignedMetadata {
                name: p.name,
                version: p.version,
                sha256: p.sha256,
                expires: p.expires,
                key_id: String::new(),
            };
            assert_eq!(
                canonical(&m),
                comment,
                "a non-canonical trusted comment was accepted"
            );
        }
        Err(e) => {
            let _ = (e.to_string(), e.reason());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(NOW_SECS);
    let text = match signature_text(data) {
        Ok(text) => text,
        Err(e) => {
            assert_eq!(e.reason(), abkit::RefusalReason::MalformedSignature);
            return;
        }
    };
    match STORE.verify(NAME, PLUGIN, text, now) {
        Ok(meta) => {
            assert_eq!(meta.name, NAME);
            assert_eq!(meta.sha256_hex(), PLUGIN_SHA256);
            assert_eq!(meta.key_id, "B34C0776479FDBA0");
            assert!(meta.expires.is_none_or(|e| e >= NOW_SECS));
        }
        Err(e) => {
            let _ = (e.to_string(), e.reason());
        }
    }
    // The same signature in the year 3000: every expiry has passed.
    let late = UNIX_EPOCH + Duration::from_secs(32_503_680_000);
    if let Ok(meta) = STORE.verify(NAME, PLUGIN, text, late) {
        assert!(meta.expires.is_none_or(|e| e >= 32_503_680_000));
    }

    check_comment(text);
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("trusted comment: ") {
            check_comment(comment);
        }
    }
    // The first line as a trusted public key (inline `[trust] public_keys` entry).
    if let Some(first) = text.lines().next() {
        let trust = TrustConfig::default().with_public_keys(vec![first.to_string()]);
        if let Err(e) = TrustStore::from_config(&trust) {
            let _ = (e.to_string(), e.reason());
        }
    }
});
