//! Interoperability with the reference `minisign` tool (Debian package `minisign`), both
//! directions (`spec/plugin-signing.md`), and agreement of the metadata writer
//! (`abkit-signing`) with the SDK's strict parser. These tests fail, never skip, when the
//! `minisign` command is missing: `.ci/test` installs it.
#![allow(clippy::unwrap_used)]

use abkit::internals::parse_trusted_comment;
use abkit::TrustConfig;
use abkit::TrustStore;
use abkit_signing::metadata::format_trusted_comment;
use abkit_signing::UtcTime;
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

const PLUGIN: &[u8] = b"\x7fELF stand-in for a cdylib strategy; the bytes are what is signed";

fn minisign(args: &[&OsStr], stdin: &[u8]) -> Output {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("minisign").is_file()));
    assert!(
        on_path,
        "the `minisign` command is not on PATH; install the Debian package `minisign` \
         (`.ci/test` does: apt-get install minisign): these interop tests need the reference tool"
    );
    let mut child = Command::new("minisign")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "minisign failed: {text}");
    text
}

fn os<P: AsRef<OsStr> + ?Sized>(p: &P) -> &OsStr {
    p.as_ref()
}

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_plugin(dir: &Path) -> PathBuf {
    let p = dir.join("libswitchback.so");
    std::fs::write(&p, PLUGIN).unwrap();
    p
}

fn trust_files(files: &[&Path]) -> TrustStore {
    let trust = TrustConfig::default()
        .with_public_key_files(files.iter().map(|p| p.to_path_buf()).collect());
    TrustStore::from_config(&trust).unwrap()
}

/// `minisign -G -W`: an unencrypted key pair from the reference tool.
fn minisign_keypair(dir: &Path) -> (PathBuf, PathBuf) {
    let (public, secret) = (dir.join("ref.pub"), dir.join("ref.key"));
    ok(minisign(
        &[
            os("-G"),
            os("-W"),
            os("-p"),
            os(&public),
            os("-s"),
            os(&secret),
        ],
        b"",
    ));
    (public, secret)
}

#[test]
fn a_plugin_signed_by_minisign_with_a_v1_comment_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = minisign_keypair(dir.path());
    let plugin = write_plugin(dir.path());
    let comment = format!(
        "abkit-plugin v1 name=switchback version=12 sha256={} expires=2999-06-30T23:59:59Z",
        sha_hex(PLUGIN)
    );
    ok(minisign(
        &[
            os("-S"),
            os("-s"),
            os(&secret),
            os("-m"),
            os(&plugin),
            os("-t"),
            os(&comment),
        ],
        b"",
    ));
    let sig = std::fs::read_to_string(dir.path().join("libswitchback.so.minisig")).unwrap();

    // The .pub file, and its base64 line alone, are both accepted.
    let pub_text = std::fs::read_to_string(&public).unwrap();
    let bare = dir.path().join("bare.pub");
    std::fs::write(&bare, pub_text.lines().nth(1).unwrap()).unwrap();
    for store in [trust_files(&[&public]), trust_files(&[&bare])] {
        let meta = store
            .verify("switchback", PLUGIN, &sig, SystemTime::now())
            .unwrap();
        assert_eq!((meta.name.as_str(), meta.version), ("switchback", 12));
        assert_eq!(meta.sha256_hex(), sha_hex(PLUGIN));
        assert_eq!(meta.expires_utc().as_deref(), Some("2999-06-30T23:59:59Z"));
        // Key ids read as minisign prints them: the same number (minisign drops leading
        // zeros; abkit always writes 16 digits, as the minisign crate does).
        let printed = pub_text.lines().next().unwrap().rsplit(' ').next().unwrap();
        assert_eq!(meta.key_id.len(), 16);
        assert_eq!(
            u64::from_str_radix(printed, 16).unwrap(),
            u64::from_str_radix(&meta.key_id, 16).unwrap(),
            "{pub_text} vs {}",
            meta.key_id
        );
        assert_eq!(store.key_ids(), std::slice::from_ref(&meta.key_id));
    }
}

#[test]
fn an_abkit_signature_verifies_with_minisign() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = abkit_signing::keygen(dir.path(), "ops", None).unwrap();
    let plugin = write_plugin(dir.path());
    let expires: UtcTime = "2999-01-01T00:00:00Z".parse().unwrap();
    let sig = abkit_signing::sign(&secret, None, &plugin, "switchback", 4, Some(expires)).unwrap();
    assert_eq!(sig, dir.path().join("libswitchback.so.minisig"));

    let out = ok(minisign(
        &[os("-V"), os("-p"), os(&public), os("-m"), os(&plugin)],
        b"",
    ));
    let expected = format!(
        "Trusted comment: abkit-plugin v1 name=switchback version=4 sha256={} expires=2999-01-01T00:00:00Z",
        sha_hex(PLUGIN)
    );
    assert!(out.contains(&expected), "{out}");

    // minisign refuses it for other bytes, as abkit does.
    std::fs::write(&plugin, b"tampered").unwrap();
    let out = minisign(
        &[os("-V"), os("-p"), os(&public), os("-m"), os(&plugin)],
        b"",
    );
    assert!(!out.status.success());
}

#[test]
fn an_encrypted_abkit_key_signs_for_minisign_and_minisign_signs_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) =
        abkit_signing::keygen(dir.path(), "enc", Some("pass phrase".into())).unwrap();
    let plugin = write_plugin(dir.path());
    abkit_signing::sign(
        &secret,
        Some("pass phrase".into()),
        &plugin,
        "cluster",
        1,
        None,
    )
    .unwrap();
    ok(minisign(
        &[os("-V"), os("-p"), os(&public), os("-m"), os(&plugin)],
        b"",
    ));

    // The reference tool decrypts the abkit-written key (password on standard input).
    let comment = format!(
        "abkit-plugin v1 name=cluster version=2 sha256={}",
        sha_hex(PLUGIN)
    );
    let x = dir.path().join("by-minisign.minisig");
    let args = [
        os("-S"),
        os("-s"),
        os(&secret),
        os("-m"),
        os(&plugin),
        os("-x"),
        os(&x),
        os("-t"),
        os(&comment),
    ];
    ok(minisign(&args, b"pass phrase\n"));
    let meta = trust_files(&[&public])
        .verify(
            "cluster",
            PLUGIN,
            &std::fs::read_to_string(&x).unwrap(),
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(meta.version, 2);
}

#[test]
fn an_abkit_key_pair_works_with_minisign_sign() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = abkit_signing::keygen(dir.path(), "ops", None).unwrap();
    let plugin = write_plugin(dir.path());
    let comment = format!(
        "abkit-plugin v1 name=switchback version=8 sha256={}",
        sha_hex(PLUGIN)
    );
    ok(minisign(
        &[
            os("-S"),
            os("-s"),
            os(&secret),
            os("-m"),
            os(&plugin),
            os("-t"),
            os(&comment),
        ],
        b"",
    ));
    ok(minisign(
        &[os("-V"), os("-p"), os(&public), os("-m"), os(&plugin)],
        b"",
    ));
    let sig = std::fs::read_to_string(dir.path().join("libswitchback.so.minisig")).unwrap();
    let meta = trust_files(&[&public])
        .verify("switchback", PLUGIN, &sig, SystemTime::now())
        .unwrap();
    assert_eq!(meta.version, 8);
}

#[test]
fn a_minisign_key_pair_works_with_abkit_sign() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = minisign_keypair(dir.path());
    let plugin = write_plugin(dir.path());
    let sig = abkit_signing::sign(&secret, None, &plugin, "switchback", 9, None).unwrap();
    ok(minisign(
        &[os("-V"), os("-p"), os(&public), os("-m"), os(&plugin)],
        b"",
    ));
    let meta = trust_files(&[&public])
        .verify(
            "switchback",
            PLUGIN,
            &std::fs::read_to_string(sig).unwrap(),
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(meta.version, 9);
}

#[test]
fn every_comment_the_signing_crate_writes_parses_in_the_sdk() {
    let times = [
        "1970-01-01T00:00:00Z",
        "2000-02-29T12:00:00Z",
        "2038-01-19T03:14:08Z",
        "9999-12-31T23:59:59Z",
    ];
    let names = ["a", "0", "switchback", "cluster_v2-beta", &"x".repeat(64)];
    for (i, name) in names.iter().enumerate() {
        for version in [0, 1, 42, u64::MAX] {
            let digest: [u8; 32] = Sha256::digest(format!("{name}{version}")).into();
            for expires in std::iter::once(None)
                .chain(times.iter().map(|t| Some(t.parse::<UtcTime>().unwrap())))
            {
                let comment = format_trusted_comment(name, version, &digest, expires).unwrap();
                let parsed =
                    parse_trusted_comment(&comment).unwrap_or_else(|e| panic!("{comment}: {e}"));
                assert_eq!(parsed.name, *name);
                assert_eq!(parsed.version, version);
                assert_eq!(parsed.sha256, digest);
                assert_eq!(
                    parsed.expires,
                    expires.map(UtcTime::unix_seconds),
                    "{comment} ({i})"
                );
            }
        }
    }
}
