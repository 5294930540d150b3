//! `abkit keygen`, `abkit sign` and `abkit verify`, run as processes.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used)]

mod common;
use common::system_library;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const PASSWORD_ENV: &str = "ABKIT_KEY_PASSWORD";

fn abkit(args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_abkit"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match password {
        Some(p) => cmd.env(PASSWORD_ENV, p),
        None => cmd.env_remove(PASSWORD_ENV),
    };
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn expect(out: &Output, code: i32) -> (String, String) {
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "stdout: {o}\nstderr: {e}");
    (o, e)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
    plugin: PathBuf,
}

impl Setup {
    /// A stand-in plugin: a copy of this machine's C library, a real shared object that passes
    /// the ELF and dependency checks `verify` runs (read at test time, never committed).
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let plugin = dir.path().join("libswitchback.so");
        std::fs::write(&plugin, system_library()).unwrap();
        Setup { dir, plugin }
    }

    /// An unencrypted key pair named `name` in `keys/`.
    fn key(&self, name: &str) -> (PathBuf, PathBuf) {
        let out = self.dir.path().join("keys");
        expect(
            &abkit(
                &["keygen", "--out", s(&out), "--name", name, "--unencrypted"],
                None,
            ),
            0,
        );
        (
            out.join(format!("{name}.pub")),
            out.join(format!("{name}.key")),
        )
    }

    fn sign(&self, key: &Path, name: &str, version: &str) -> Output {
        abkit(
            &[
                "sign",
                "--key",
                s(key),
                "--name",
                name,
                "--plugin-version",
                version,
                s(&self.plugin),
            ],
            None,
        )
    }
}

#[test]
fn keygen_unencrypted_warns_loudly_and_prints_the_key_to_trust() {
    let t = Setup::new();
    let out = t.dir.path().join("keys");
    let (stdout, stderr) = expect(
        &abkit(&["keygen", "--out", s(&out), "--unencrypted"], None),
        0,
    );
    assert!(
        stderr.contains("WARNING") && stderr.contains("WITHOUT a password"),
        "{stderr}"
    );
    let pub_text = std::fs::read_to_string(out.join("abkit.pub")).unwrap();
    let pub_line = pub_text.lines().nth(1).unwrap();
    assert!(
        stdout.contains(&format!("public_keys = [\"{pub_line}\"]")),
        "{stdout}"
    );
    let key_id = pub_text.lines().next().unwrap().rsplit(' ').next().unwrap();
    assert!(
        stdout.contains(&format!("key id:      {key_id}")),
        "{stdout}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("abkit.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwrites.
    let (_, stderr) = expect(
        &abkit(&["keygen", "--out", s(&out), "--unencrypted"], None),
        1,
    );
    assert!(stderr.contains("already exists"), "{stderr}");
}

#[test]
fn sign_then_verify_prints_the_signed_metadata() {
    let t = Setup::new();
    let (public, secret) = t.key("ops");
    let out = abkit(
        &[
            "sign",
            "--key",
            s(&secret),
            "--name",
            "switchback",
            "--plugin-version",
            "7",
        ]
        .into_iter()
        .chain(["--expires", "2999-12-31T00:00:00Z", s(&t.plugin)])
        .collect::<Vec<_>>(),
        None,
    );
    let (stdout, _) = expect(&out, 0);
    assert!(stdout.contains("libswitchback.so.minisig"), "{stdout}");
    assert!(
        stdout.contains("abkit-plugin v1 name=switchback version=7 sha256="),
        "{stdout}"
    );

    let (stdout, stderr) = expect(
        &abkit(
            &[
                "verify",
                "--pubkey",
                s(&public),
                "--name",
                "switchback",
                s(&t.plugin),
            ],
            None,
        ),
        0,
    );
    for line in [
        "name:    switchback",
        "version: 7",
        "expires: 2999-12-31T00:00:00Z",
        "key id:  ",
        "sha256:  ",
    ] {
        assert!(stdout.contains(line), "{line:?} not in {stdout}");
    }
    assert!(!stderr.contains("note:"), "{stderr}");

    // Without --name, the signed name is used, and the tool says so.
    let (stdout, stderr) = expect(
        &abkit(&["verify", "--pubkey", s(&public), s(&t.plugin)], None),
        0,
    );
    assert!(stdout.contains("name:    switchback"), "{stdout}");
    assert!(
        stderr.contains("no --name given") && stderr.contains("`switchback`"),
        "{stderr}"
    );
}

#[test]
fn verify_refuses_with_the_reason_and_exit_1() {
    let t = Setup::new();
    let (public, secret) = t.key("ops");
    let (stranger, _) = t.key("stranger");
    expect(&t.sign(&secret, "switchback", "1"), 0);

    let (_, e) = expect(
        &abkit(
            &[
                "verify",
                "--pubkey",
                s(&public),
                "--name",
                "cluster",
                s(&t.plugin),
            ],
            None,
        ),
        1,
    );
    assert!(
        e.contains("refused (name_mismatch)") && e.contains("`cluster`"),
        "{e}"
    );

    let (_, e) = expect(
        &abkit(&["verify", "--pubkey", s(&stranger), s(&t.plugin)], None),
        1,
    );
    assert!(
        e.contains("refused (unknown_key_id)") && e.contains("not trusted"),
        "{e}"
    );

    // Rotation: trusting both keys accepts it.
    expect(
        &abkit(
            &[
                "verify",
                "--pubkey",
                s(&stranger),
                "--pubkey",
                s(&public),
                s(&t.plugin),
            ],
            None,
        ),
        0,
    );

    let sig = t.dir.path().join("libswitchback.so.minisig");
    let moved = t.dir.path().join("elsewhere.minisig");
    std::fs::rename(&sig, &moved).unwrap();
    let (_, e) = expect(
        &abkit(&["verify", "--pubkey", s(&public), s(&t.plugin)], None),
        1,
    );
    assert!(
        e.contains("refused (signature_missing)") && e.contains(s(&sig)),
        "{e}"
    );
    expect(
        &abkit(
            &[
                "verify",
                "--pubkey",
                s(&public),
                s(&t.plugin),
                "--signature",
                s(&moved),
            ],
            None,
        ),
        0,
    );

    std::fs::write(&t.plugin, b"\x7fELF a tampered plugin").unwrap();
    let (_, e) = expect(
        &abkit(
            &[
                "verify",
                "--pubkey",
                s(&public),
                s(&t.plugin),
                "--signature",
                s(&moved),
            ],
            None,
        ),
        1,
    );
    assert!(e.contains("refused (bad_signature)"), "{e}");
    assert!(e.contains(s(&t.plugin)), "{e}");
}

#[test]
fn sign_refuses_bad_input_with_the_fix() {
    let t = Setup::new();
    let (_, secret) = t.key("ops");
    let (_, e) = expect(&t.sign(&secret, "Not A Name", "1"), 1);
    assert!(e.contains("invalid plugin name"), "{e}");
    let (_, e) = expect(
        &t.sign(&t.dir.path().join("none.key"), "switchback", "1"),
        1,
    );
    assert!(e.contains("run `abkit keygen"), "{e}");
    let args = [
        "sign",
        "--key",
        s(&secret),
        "--name",
        "x",
        "--plugin-version",
        "1",
        "--expires",
        "tomorrow",
    ];
    let (_, e) = expect(
        &abkit(
            &args.into_iter().chain([s(&t.plugin)]).collect::<Vec<_>>(),
            None,
        ),
        1,
    );
    assert!(e.contains("YYYY-MM-DDTHH:MM:SSZ"), "{e}");
    expect(&t.sign(&secret, "switchback", "-1"), 2); // usage error (clap)
    expect(&abkit(&["verify", s(&t.plugin)], None), 2); // --pubkey is required
    assert!(!t.dir.path().join("libswitchback.so.minisig").exists());
}

#[test]
fn an_encrypted_key_takes_its_password_from_the_environment() {
    let t = Setup::new();
    let out = t.dir.path().join("keys");
    let (_, stderr) = expect(
        &abkit(
            &["keygen", "--out", s(&out), "--name", "enc"],
            Some("hunter2 but longer"),
        ),
        0,
    );
    assert!(!stderr.contains("WARNING"), "{stderr}");
    let (public, secret) = (out.join("enc.pub"), out.join("enc.key"));
    let sign = [
        "sign",
        "--key",
        s(&secret),
        "--name",
        "cluster",
        "--plugin-version",
        "3",
        s(&t.plugin),
    ];
    let (_, e) = expect(&abkit(&sign, Some("wrong")), 1);
    assert!(e.contains("wrong password"), "{e}");
    expect(&abkit(&sign, Some("hunter2 but longer")), 0);
    expect(
        &abkit(
            &[
                "verify",
                "--pubkey",
                s(&public),
                "--name",
                "cluster",
                s(&t.plugin),
            ],
            None,
        ),
        0,
    );
}

#[test]
fn verify_runs_the_loaders_library_checks_on_the_signed_bytes() {
    let t = Setup::new();
    let (public, secret) = t.key("ops");
    // Truncated after signing its truncation: validly signed, but segments past the end.
    let whole = system_library();
    std::fs::write(&t.plugin, &whole[..whole.len() / 2]).unwrap();
    expect(&t.sign(&secret, "switchback", "1"), 0);
    let (_, stderr) = expect(
        &abkit(&["verify", "--pubkey", s(&public), s(&t.plugin)], None),
        1,
    );
    assert!(stderr.contains("malformed_library"), "{stderr}");

    // A dependency outside the allowlist, added before signing (needs Debian's patchelf).
    std::fs::write(&t.plugin, &whole).unwrap();
    let patched = std::process::Command::new("patchelf")
        .args(["--add-needed", "libevil.so"])
        .arg(&t.plugin)
        .status()
        .expect("patchelf is needed (.ci/test installs it)");
    assert!(patched.success());
    expect(&t.sign(&secret, "switchback", "1"), 0);
    let (_, stderr) = expect(
        &abkit(&["verify", "--pubkey", s(&public), s(&t.plugin)], None),
        1,
    );
    assert!(
        stderr.contains("disallowed_dependency") && stderr.contains("libevil.so"),
        "{stderr}"
    );
    // Allowed explicitly, it passes and says what it needs.
    let (stdout, _) = expect(
        &abkit(
            &[
                "verify",
                "--pubkey",
                s(&public),
                "--allow-library",
                "libevil.so",
                "--allow-library",
                "ld-linux-x86-64.so.2",
                "--allow-library",
                "ld-linux-aarch64.so.1",
                s(&t.plugin),
            ],
            None,
        ),
        0,
    );
    assert!(
        stdout.contains("needs:") && stdout.contains("libevil.so"),
        "{stdout}"
    );
}
