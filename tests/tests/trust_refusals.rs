//! Hostile rows 1-12 (`hostile-plugins.md`) at the verification level: every bad signature or
//! bad signed metadata is refused by `abkit::trust` with its own reason code and a message
//! that names the thing. Arbitrary byte strings stand in for plugins: nothing is loaded here.
#![allow(clippy::unwrap_used)]

use abkit::internals::{read_capped, signature_text};
use abkit::RefusalReason;
use abkit::TrustConfig;
use abkit::{
    FileKind, SignedMetadata, TrustError, TrustStore, VersionLedger, PLUGIN_MAX_BYTES,
    SIGNATURE_MAX_BYTES,
};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

const PLUGIN: &[u8] = b"\x7fELF pretend this is the switchback strategy, release 3";

/// A throwaway unencrypted key pair in its own temporary directory.
struct Key {
    _dir: TempDir,
    public: PathBuf,
    secret: PathBuf,
}

fn key() -> Key {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = abkit_signing::keygen(dir.path(), "k", None).unwrap();
    Key {
        _dir: dir,
        public,
        secret,
    }
}

fn store(keys: &[&Key]) -> TrustStore {
    let trust = TrustConfig::default()
        .with_public_key_files(keys.iter().map(|k| k.public.clone()).collect());
    TrustStore::from_config(&trust).unwrap()
}

fn key_id(k: &Key) -> String {
    store(&[k]).key_ids().remove(0)
}

/// `abkit sign` of `bytes` as `name` / `version`; returns the signature text.
fn sign(k: &Key, bytes: &[u8], name: &str, version: u64, expires: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("libplugin.so");
    std::fs::write(&plugin, bytes).unwrap();
    let expires = expires.map(|e| e.parse().unwrap());
    let sig = abkit_signing::sign(&k.secret, None, &plugin, name, version, expires).unwrap();
    std::fs::read_to_string(sig).unwrap()
}

/// A valid prehashed signature of `bytes` with any trusted comment (the minisign crate).
fn sign_with_comment(k: &Key, bytes: &[u8], comment: &str) -> String {
    let text = std::fs::read_to_string(&k.secret).unwrap();
    let sk = minisign::SecretKeyBox::from_string(&text)
        .unwrap()
        .into_unencrypted_secret_key()
        .unwrap();
    minisign::sign(None, &sk, bytes, Some(comment), None)
        .unwrap()
        .into_string()
}

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn v1(name: &str, version: u64, bytes: &[u8]) -> String {
    format!(
        "abkit-plugin v1 name={name} version={version} sha256={}",
        sha_hex(bytes)
    )
}

fn at(utc_seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(utc_seconds)
}

/// Verifies and expects a refusal with `reason` whose message contains every one of `names`.
fn refused(
    r: Result<SignedMetadata, TrustError>,
    reason: RefusalReason,
    names: &[&str],
) -> TrustError {
    let e = r.expect_err("expected a refusal");
    assert_eq!(e.reason(), reason, "{e}");
    let msg = e.to_string();
    for n in names {
        assert!(msg.contains(n), "message {msg:?} does not name {n:?}");
    }
    e
}

fn minisign_bin() -> &'static str {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("minisign").is_file()));
    assert!(
        found,
        "the `minisign` command is not on PATH; install the Debian package `minisign` \
         (`.ci/test` does: apt-get install minisign) — this test needs the reference tool"
    );
    "minisign"
}

#[test]
fn a_correctly_signed_plugin_is_accepted_with_its_metadata() {
    let k = key();
    let sig = sign(&k, PLUGIN, "switchback", 3, Some("2999-01-01T00:00:00Z"));
    let meta = store(&[&k])
        .verify("switchback", PLUGIN, &sig, SystemTime::now())
        .unwrap();
    assert_eq!((meta.name.as_str(), meta.version), ("switchback", 3));
    assert_eq!(meta.sha256_hex(), sha_hex(PLUGIN));
    assert_eq!(meta.expires_utc().as_deref(), Some("2999-01-01T00:00:00Z"));
    assert_eq!(meta.key_id, key_id(&k));
}

#[test]
fn row_01_one_flipped_byte_is_a_bad_signature() {
    let k = key();
    let sig = sign(&k, PLUGIN, "switchback", 3, None);
    for i in [0, PLUGIN.len() / 2, PLUGIN.len() - 1] {
        let mut flipped = PLUGIN.to_vec();
        flipped[i] ^= 0x01;
        refused(
            store(&[&k]).verify("switchback", &flipped, &sig, SystemTime::now()),
            RefusalReason::BadSignature,
            &["signature"],
        );
    }
}

#[test]
fn row_02_a_key_that_is_not_trusted_is_an_unknown_key_id() {
    let (trusted, stranger) = (key(), key());
    let sig = sign(&stranger, PLUGIN, "switchback", 3, None);
    let e = refused(
        store(&[&trusted]).verify("switchback", PLUGIN, &sig, SystemTime::now()),
        RefusalReason::UnknownKeyId,
        &[
            &key_id(&stranger),
            &key_id(&trusted),
            "not trusted",
            "[trust]",
        ],
    );
    assert!(matches!(e, TrustError::UnknownKeyId { ref trusted, .. } if trusted.len() == 1));
}

#[test]
fn row_03_a_missing_minisig_is_signature_missing() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("libswitchback.so");
    std::fs::write(&plugin, PLUGIN).unwrap();
    assert_eq!(
        read_capped(&plugin, PLUGIN_MAX_BYTES, FileKind::Plugin).unwrap(),
        PLUGIN
    );
    let sig = dir.path().join("libswitchback.so.minisig");
    let e = read_capped(&sig, SIGNATURE_MAX_BYTES, FileKind::Signature).unwrap_err();
    assert_eq!(e.reason(), RefusalReason::SignatureMissing, "{e}");
    assert!(e.to_string().contains(&sig.display().to_string()), "{e}");
    assert!(e.to_string().contains("abkit sign"), "{e}");
}

#[test]
fn row_04_a_valid_signature_of_another_plugin_is_a_bad_signature() {
    let k = key();
    let other = b"\x7fELF the cluster strategy".to_vec();
    let sig_of_other = sign(&k, &other, "switchback", 3, None);
    refused(
        store(&[&k]).verify("switchback", PLUGIN, &sig_of_other, SystemTime::now()),
        RefusalReason::BadSignature,
        &[],
    );
}

#[test]
fn row_05_a_legacy_non_prehashed_signature_is_refused() {
    let bin = minisign_bin();
    let dir = tempfile::tempdir().unwrap();
    let (public, secret, plugin) = (
        dir.path().join("k.pub"),
        dir.path().join("k.key"),
        dir.path().join("libswitchback.so"),
    );
    std::fs::write(&plugin, PLUGIN).unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "minisign {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "-G".as_ref(),
        "-W".as_ref(),
        "-p".as_ref(),
        public.as_os_str(),
        "-s".as_ref(),
        secret.as_os_str(),
    ]);
    let comment = v1("switchback", 3, PLUGIN);
    run(&[
        "-S".as_ref(),
        "-l".as_ref(),
        "-s".as_ref(),
        secret.as_os_str(),
        "-m".as_ref(),
        plugin.as_os_str(),
        "-t".as_ref(),
        comment.as_ref(),
    ]);
    let sig = std::fs::read_to_string(dir.path().join("libswitchback.so.minisig")).unwrap();
    let trust = TrustConfig::default().with_public_key_files(vec![public]);
    refused(
        TrustStore::from_config(&trust).unwrap().verify(
            "switchback",
            PLUGIN,
            &sig,
            SystemTime::now(),
        ),
        RefusalReason::LegacyAlgorithm,
        &["legacy", "-l"],
    );
}

#[test]
fn row_06_an_edited_trusted_comment_fails_the_global_signature() {
    let k = key();
    let sig = sign(&k, PLUGIN, "switchback", 3, None);
    let comment = sig.lines().nth(2).unwrap().to_string();
    let edits = [
        comment.replace("version=3", "version=9"),
        comment.replace("name=switchback", "name=cluster"),
        format!("{comment} expires=2999-01-01T00:00:00Z"),
    ];
    for edited in edits {
        let tampered = sig.replace(&comment, &edited);
        refused(
            store(&[&k]).verify("switchback", PLUGIN, &tampered, SystemTime::now()),
            RefusalReason::BadSignature,
            &[],
        );
    }
}

#[test]
fn row_07_malformed_signatures_are_refused_without_panicking() {
    let k = key();
    let s = store(&[&k]);
    let sig = sign(&k, PLUGIN, "switchback", 3, None);
    let lines: Vec<&str> = sig.lines().collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = b64.decode(lines[1]).unwrap();
    raw[0..2].copy_from_slice(b"XY");
    let unknown_algorithm = sig.replacen(lines[1], &b64.encode(&raw), 1);
    let cases = [
        ("empty", String::new()),
        ("truncated", sig[..sig.len() / 2].to_string()),
        ("three lines", lines[..3].join("\n")),
        (
            "bad base64",
            sig.replacen(lines[1], "this is !!! not base64", 1),
        ),
        (
            "short signature",
            sig.replacen(lines[1], &lines[1][..40], 1),
        ),
        (
            "bad global signature base64",
            sig.replacen(lines[3], "%%%%", 1),
        ),
        ("unknown algorithm", unknown_algorithm),
        ("junk", "\u{0}\u{1}garbage\n".repeat(100)),
        ("large junk", "A".repeat(10 << 20)),
    ];
    for (what, text) in cases {
        let e = refused(
            s.verify("switchback", PLUGIN, &text, SystemTime::now()),
            RefusalReason::MalformedSignature,
            &["signature"],
        );
        assert!(
            matches!(e, TrustError::MalformedSignature { .. }),
            "{what}: {e}"
        );
    }
    assert_eq!(
        signature_text(&[0xc3, 0x28]).unwrap_err().reason(),
        RefusalReason::MalformedSignature
    );

    // 10 MiB of junk on disk is refused by size before it is read.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("libswitchback.so.minisig");
    std::fs::write(&junk, vec![0xa5u8; 10 << 20]).unwrap();
    let e = read_capped(&junk, SIGNATURE_MAX_BYTES, FileKind::Signature).unwrap_err();
    assert_eq!(e.reason(), RefusalReason::TooLarge, "{e}");
    assert!(
        matches!(e, TrustError::TooLarge { size, limit: 4096, kind: FileKind::Signature, .. } if size == 10 << 20)
    );
    assert!(e.to_string().contains(&junk.display().to_string()), "{e}");
}

#[test]
fn row_08_a_comment_that_is_not_v1_metadata_names_the_field() {
    let k = key();
    let s = store(&[&k]);
    let sha = sha_hex(PLUGIN);
    let cases = [
        (
            "timestamp:1700000000\tfile:libswitchback.so".to_string(),
            "format",
        ),
        (
            format!("abkit-plugin v2 name=switchback version=3 sha256={sha}"),
            "format version",
        ),
        (format!("abkit-plugin v1 version=3 sha256={sha}"), "name"),
        (
            "abkit-plugin v1 name=switchback version=3".to_string(),
            "sha256",
        ),
        (
            format!("abkit-plugin v1 name=switchback sha256={sha}"),
            "version",
        ),
        (
            format!("abkit-plugin v1 name=switchback version=3 version=4 sha256={sha}"),
            "version",
        ),
        (
            format!("abkit-plugin v1 name=switchback version=3 sha256={sha} colour=red"),
            "colour",
        ),
        (
            format!("abkit-plugin v1 name=switchback version=three sha256={sha}"),
            "version",
        ),
        (
            format!("abkit-plugin v1 name=switchback version=3 sha256={sha} expires=tomorrow"),
            "expires",
        ),
        (
            format!("abkit-plugin v1 name=switchback  version=3 sha256={sha}"),
            "separator",
        ),
    ];
    for (comment, field) in cases {
        let sig = sign_with_comment(&k, PLUGIN, &comment);
        let e = refused(
            s.verify("switchback", PLUGIN, &sig, SystemTime::now()),
            RefusalReason::BadMetadata,
            &[&format!("`{field}`")],
        );
        assert!(
            matches!(&e, TrustError::BadMetadata { field: f, .. } if f == field),
            "{comment:?}: {e}"
        );
    }
}

#[test]
fn row_09_a_plugin_signed_under_another_name_is_a_name_mismatch() {
    let k = key();
    let sig = sign(&k, PLUGIN, "switchback", 3, None);
    refused(
        store(&[&k]).verify("cluster", PLUGIN, &sig, SystemTime::now()),
        RefusalReason::NameMismatch,
        &["`switchback`", "`cluster`"],
    );
}

#[test]
fn row_10_a_lower_version_than_accepted_is_a_rollback_also_after_a_restart() {
    let k = key();
    let s = store(&[&k]);
    let now = SystemTime::now();
    let v5 = s
        .verify(
            "switchback",
            PLUGIN,
            &sign(&k, PLUGIN, "switchback", 5, None),
            now,
        )
        .unwrap();
    let v4 = s
        .verify(
            "switchback",
            PLUGIN,
            &sign(&k, PLUGIN, "switchback", 4, None),
            now,
        )
        .unwrap();

    let mut ledger = VersionLedger::in_memory();
    ledger.check(&v5).unwrap();
    ledger.record(&v5).unwrap();
    let e = ledger.check(&v4).unwrap_err();
    assert_eq!(e.reason(), RefusalReason::Rollback);
    for n in ["switchback", "version 4", "version 5"] {
        assert!(e.to_string().contains(n), "{e}");
    }
    ledger.check(&v5).unwrap(); // the same release again is fine

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    VersionLedger::open(&state).unwrap().record(&v5).unwrap();
    let reopened = VersionLedger::open(&state).unwrap(); // a restart
    assert_eq!(reopened.highest("switchback"), Some(5));
    assert_eq!(
        reopened.check(&v4).unwrap_err().reason(),
        RefusalReason::Rollback
    );
    reopened.check(&v5).unwrap();
}

#[test]
fn row_11_an_expired_plugin_is_refused() {
    let k = key();
    let s = store(&[&k]);
    let sig = sign(&k, PLUGIN, "switchback", 3, Some("2999-01-01T00:00:00Z"));
    let expires = 32_472_144_000; // 2999-01-01T00:00:00Z
    assert!(s.verify("switchback", PLUGIN, &sig, at(expires)).is_ok());
    refused(
        s.verify("switchback", PLUGIN, &sig, at(expires + 1)),
        RefusalReason::Expired,
        &["2999-01-01T00:00:00Z", "--expires"],
    );

    // Signed with an expiry that is already past (abkit sign refuses that; minisign does not).
    let past = sign_with_comment(
        &k,
        PLUGIN,
        &format!(
            "{} expires=2001-02-03T04:05:06Z",
            v1("switchback", 3, PLUGIN)
        ),
    );
    refused(
        s.verify("switchback", PLUGIN, &past, SystemTime::now()),
        RefusalReason::Expired,
        &["2001-02-03T04:05:06Z"],
    );
}

#[test]
fn row_12_a_signed_sha256_of_other_bytes_is_a_digest_mismatch() {
    let k = key();
    let other = b"another build".as_slice();
    let sig = sign_with_comment(&k, PLUGIN, &v1("switchback", 3, other));
    refused(
        store(&[&k]).verify("switchback", PLUGIN, &sig, SystemTime::now()),
        RefusalReason::DigestMismatch,
        &[&sha_hex(PLUGIN), &sha_hex(other)],
    );
}

#[test]
fn two_trusted_keys_at_once_both_verify_during_rotation() {
    let (old, new) = (key(), key());
    let s = store(&[&old, &new]);
    assert_eq!(s.key_ids(), [key_id(&old), key_id(&new)]);
    for k in [&old, &new] {
        let meta = s
            .verify(
                "switchback",
                PLUGIN,
                &sign(k, PLUGIN, "switchback", 3, None),
                SystemTime::now(),
            )
            .unwrap();
        assert_eq!(meta.key_id, key_id(k));
    }
}

#[test]
fn inline_base64_keys_are_trusted_like_key_files() {
    let k = key();
    let line = std::fs::read_to_string(&k.public)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let s = TrustStore::from_config(&TrustConfig::default().with_public_keys(vec![line])).unwrap();
    assert!(s
        .verify(
            "switchback",
            PLUGIN,
            &sign(&k, PLUGIN, "switchback", 3, None),
            SystemTime::now()
        )
        .is_ok());
}

#[test]
fn without_trusted_keys_every_plugin_is_refused() {
    let k = key();
    let s = TrustStore::from_config(&TrustConfig::default()).unwrap();
    assert!(s.is_empty());
    refused(
        s.verify(
            "switchback",
            PLUGIN,
            &sign(&k, PLUGIN, "switchback", 3, None),
            SystemTime::now(),
        ),
        RefusalReason::NoTrustedKeys,
        &["[trust]"],
    );
}

#[test]
fn checks_run_in_the_specified_order() {
    // A signature by an untrusted key over an edited comment of the wrong name: the key is
    // reported, since it is checked before the signature and the metadata.
    let (trusted, stranger) = (key(), key());
    let sig = sign(&stranger, PLUGIN, "cluster", 3, None).replace("version=3", "version=4");
    let r = store(&[&trusted]).verify("switchback", b"other bytes", &sig, SystemTime::now());
    refused(r, RefusalReason::UnknownKeyId, &[]);
    // Valid signature, wrong name and wrong digest and expired: the name comes first.
    let sig = sign_with_comment(
        &trusted,
        PLUGIN,
        &format!("{} expires=2001-01-01T00:00:00Z", v1("cluster", 1, b"x")),
    );
    refused(
        store(&[&trusted]).verify("switchback", PLUGIN, &sig, SystemTime::now()),
        RefusalReason::NameMismatch,
        &[],
    );
    // ... then expiry, then the digest.
    refused(
        store(&[&trusted]).verify("cluster", PLUGIN, &sig, SystemTime::now()),
        RefusalReason::Expired,
        &[],
    );
}
