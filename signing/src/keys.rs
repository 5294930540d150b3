//! Key pairs: generating them, reading secret keys, asking for passwords.

use crate::SigningError;
use base64::Engine as _;
use minisign::{KeyPair, SecretKey, SecretKeyBox};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest secret key file read (a real one is about 250 bytes).
const KEY_FILE_MAX_BYTES: u64 = 64 << 10;
/// Bytes of a decoded minisign secret key.
const SECRET_KEY_BYTES: usize = 158;
/// Bytes of the checksum that ends a decoded secret key.
const CHECKSUM_BYTES: usize = 32;
const KDF_NONE: [u8; 2] = [0, 0];
const KDF_SCRYPT: [u8; 2] = *b"Sc";

/// Key id as minisign prints it: the 8 key-number bytes read as a little-endian u64, uppercase hex.
pub fn key_id_hex(keynum: &[u8]) -> String {
    let mut le = [0u8; 8];
    for (d, s) in le.iter_mut().zip(keynum) {
        *d = *s;
    }
    format!("{:016X}", u64::from_le_bytes(le))
}

fn is_valid_key_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// Generates a minisign key pair and writes `out_dir/NAME.pub` and `out_dir/NAME.key` (mode 0600).
///
/// With `Some(password)` the secret key is encrypted with it (scrypt, as `minisign -G`);
/// with `None` it is written unencrypted (as `minisign -G -W`). Nothing is ever asked on
/// the terminal here, and existing files are never overwritten. `out_dir` is created
/// (mode 0700) if missing. Returns `(public key path, secret key path)`.
pub fn keygen(
    out_dir: &Path,
    name: &str,
    password: Option<String>,
) -> Result<(PathBuf, PathBuf), SigningError> {
    if !is_valid_key_name(name) {
        return Err(SigningError::InvalidKeyName {
            name: name.to_string(),
        });
    }
    if password.as_deref() == Some("") {
        return Err(SigningError::EmptyPassword);
    }
    let pub_path = out_dir.join(format!("{name}.pub"));
    let key_path = out_dir.join(format!("{name}.key"));
    for p in [&pub_path, &key_path] {
        if p.exists() {
            return Err(SigningError::KeyExists { path: p.clone() });
        }
    }
    create_private_dir(out_dir)?;

    let encrypted = password.is_some();
    let KeyPair { pk, sk } = match password {
        Some(pw) => KeyPair::generate_encrypted_keypair(Some(pw)),
        None => KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(SigningError::minisign)?;
    // The id comes from the public half: an encrypted secret key's key number is stored
    // encrypted too, so `sk.keynum()` would name a key that does not exist.
    let id = key_id_hex(pk.keynum());
    let comment = if encrypted {
        format!("abkit secret key {id} (encrypted)")
    } else {
        format!("abkit secret key {id} (unencrypted)")
    };
    let sk_text = sk
        .to_box(Some(&comment))
        .map_err(SigningError::minisign)?
        .into_string();
    let pk_text = pk.to_box().map_err(SigningError::minisign)?.into_string();

    write_new(&key_path, sk_text.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&pub_path, pk_text.as_bytes(), 0o644) {
        let _ = fs::remove_file(&key_path);
        return Err(e);
    }
    Ok((pub_path, key_path))
}

fn create_private_dir(dir: &Path) -> Result<(), SigningError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(SigningError::io(dir))
}

/// Creates `path` (never overwriting) with `mode` on Unix, writes `bytes` and syncs.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SigningError> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = o.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => SigningError::KeyExists {
            path: path.to_path_buf(),
        },
        _ => SigningError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(SigningError::io(path))
}

/// A secret key file read and checked, not yet decrypted.
struct KeyFile {
    text: String,
    raw: Vec<u8>,
    encrypted: bool,
}

fn read_key_file(path: &Path) -> Result<KeyFile, SigningError> {
    let bad = |detail: &str| SigningError::BadKey {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    // A regular file only (a FIFO or /dev/zero fails at once); a symlink to one is followed.
    let bytes =
        crate::sign::read_regular_capped(path, KEY_FILE_MAX_BYTES, true).map_err(|e| match e {
            crate::sign::FileReadError::NotFound => SigningError::KeyNotFound {
                path: path.to_path_buf(),
            },
            crate::sign::FileReadError::TooLarge { .. } => bad("the file is far too large"),
            other => SigningError::Io {
                path: path.to_path_buf(),
                source: other.into_io_error(),
            },
        })?;
    let text = String::from_utf8(bytes).map_err(|_| bad("not text"))?;
    let mut lines = text.lines();
    let comment = lines.next().unwrap_or_default();
    if !comment.starts_with("untrusted comment:") {
        return Err(bad("the first line is not `untrusted comment: ...`"));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(lines.next().unwrap_or_default().trim())
        .map_err(|_| bad("the second line is not base64"))?;
    if raw.len() != SECRET_KEY_BYTES {
        return Err(bad("the key has the wrong length"));
    }
    if &raw[0..2] != b"Ed" {
        return Err(bad("unknown signature algorithm"));
    }
    let encrypted = match [raw[2], raw[3]] {
        KDF_NONE => false,
        KDF_SCRYPT => true,
        _ => return Err(bad("unknown key encryption")),
    };
    Ok(KeyFile {
        text,
        raw,
        encrypted,
    })
}

/// Whether the secret key in `key_file` is encrypted (needs a password to sign).
pub fn key_is_encrypted(key_file: &Path) -> Result<bool, SigningError> {
    Ok(read_key_file(key_file)?.encrypted)
}

/// Reads and (if encrypted) decrypts a secret key. `password` is ignored for unencrypted keys.
pub(crate) fn load_secret_key(
    key_file: &Path,
    password: Option<String>,
) -> Result<SecretKey, SigningError> {
    let kf = read_key_file(key_file)?;
    let sk_box = SecretKeyBox::from_string(&kf.text).map_err(SigningError::minisign)?;
    if !kf.encrypted {
        // `minisign -G -W` (0.10 and later) leaves the checksum of an unencrypted key zeroed,
        // which the minisign crate reads as corruption: take such a key as it is. Signing
        // checks the result against the key's own public half, so a damaged key still fails.
        if kf.raw[SECRET_KEY_BYTES - CHECKSUM_BYTES..]
            .iter()
            .all(|&b| b == 0)
        {
            return SecretKey::from_bytes(&kf.raw).map_err(SigningError::minisign);
        }
        return SecretKey::from_unencrypted_box(sk_box).map_err(|e| SigningError::BadKey {
            path: key_file.to_path_buf(),
            detail: e.to_string(),
        });
    }
    let Some(password) = password else {
        return Err(SigningError::PasswordRequired {
            path: key_file.to_path_buf(),
        });
    };
    SecretKey::from_box(sk_box, Some(password)).map_err(|e| match e.kind() {
        minisign::ErrorKind::Verify => SigningError::WrongPassword {
            path: key_file.to_path_buf(),
        },
        _ => SigningError::BadKey {
            path: key_file.to_path_buf(),
            detail: e.to_string(),
        },
    })
}

/// Asks for a password on the terminal (without echo).
pub fn prompt_password(prompt: &str) -> Result<String, SigningError> {
    rpassword::prompt_password(prompt).map_err(|source| SigningError::PasswordPrompt { source })
}

/// Asks twice for the password of a new key; refuses an empty one or two that differ.
pub fn prompt_new_password() -> Result<String, SigningError> {
    let first = prompt_password("password for the new secret key: ")?;
    if first.is_empty() {
        return Err(SigningError::EmptyPassword);
    }
    let second = prompt_password("the same password again: ")?;
    if first != second {
        return Err(SigningError::PasswordMismatch);
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_unencrypted_pair_is_written_with_a_private_secret_key_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (p, k) = keygen(dir.path(), "ops", None).unwrap();
        assert_eq!(
            (p.file_name().unwrap(), k.file_name().unwrap()),
            ("ops.pub".as_ref(), "ops.key".as_ref())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&k).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let pub_text = fs::read_to_string(&p).unwrap();
        assert!(pub_text.starts_with("untrusted comment: "), "{pub_text}");
        assert_eq!(pub_text.lines().count(), 2);
        assert!(!key_is_encrypted(&k).unwrap());
        let id = key_id_hex(load_secret_key(&k, None).unwrap().keynum());
        assert!(pub_text.contains(&id), "{pub_text} lacks {id}");
        let e = keygen(dir.path(), "ops", None).unwrap_err();
        assert!(matches!(e, SigningError::KeyExists { .. }), "{e}");
    }

    #[test]
    fn an_encrypted_key_needs_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let (_, k) = keygen(dir.path(), "enc", Some("s3cret".into())).unwrap();
        assert!(key_is_encrypted(&k).unwrap());
        assert!(matches!(
            load_secret_key(&k, None),
            Err(SigningError::PasswordRequired { .. })
        ));
        assert!(matches!(
            load_secret_key(&k, Some("wrong".into())),
            Err(SigningError::WrongPassword { .. })
        ));
        assert!(load_secret_key(&k, Some("s3cret".into())).is_ok());
    }

    #[test]
    fn an_encrypted_pair_names_the_public_key_id_and_signs_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (p, k) = keygen(dir.path(), "enc", Some("s3cret".into())).unwrap();
        let pk = minisign::PublicKey::from_file(&p).unwrap();
        let pk_id = key_id_hex(pk.keynum());
        // The secret key file's comment names the public key's id.
        let sk_comment = fs::read_to_string(&k)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            sk_comment,
            format!("untrusted comment: abkit secret key {pk_id} (encrypted)")
        );
        // Decrypted with the password, the key is the public key's other half.
        let sk = load_secret_key(&k, Some("s3cret".into())).unwrap();
        assert_eq!(key_id_hex(sk.keynum()), pk_id);

        // A signature made with the password carries that id and verifies.
        let plugin = dir.path().join("libp.so");
        fs::write(&plugin, b"plugin bytes").unwrap();
        let signed = crate::sign_plugin(&k, Some("s3cret".into()), &plugin, "p", 1, None).unwrap();
        assert_eq!(signed.key_id, pk_id);
        let text = fs::read_to_string(&signed.signature_path).unwrap();
        let sig_box = minisign::SignatureBox::from_string(&text).unwrap();
        assert_eq!(key_id_hex(sig_box.keynum()), pk_id);
        assert!(
            sig_box.untrusted_comment().unwrap().contains(&pk_id),
            "{text}"
        );
        minisign::verify(
            &pk,
            &sig_box,
            fs::File::open(&plugin).unwrap(),
            true,
            false,
            false,
        )
        .unwrap();
    }

    #[test]
    fn bad_names_passwords_and_key_files_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            keygen(dir.path(), "../x", None),
            Err(SigningError::InvalidKeyName { .. })
        ));
        assert!(matches!(
            keygen(dir.path(), "x", Some(String::new())),
            Err(SigningError::EmptyPassword)
        ));
        let missing = load_secret_key(&dir.path().join("none.key"), None).unwrap_err();
        assert!(missing.to_string().contains("abkit keygen"), "{missing}");
        let junk = dir.path().join("junk.key");
        fs::write(&junk, "untrusted comment: x\nnot base64!\n").unwrap();
        assert!(matches!(
            key_is_encrypted(&junk),
            Err(SigningError::BadKey { .. })
        ));
    }

    #[test]
    fn key_ids_read_the_key_number_little_endian() {
        assert_eq!(key_id_hex(&[1, 2, 3, 4, 5, 6, 7, 0xAB]), "AB07060504030201");
    }
}
