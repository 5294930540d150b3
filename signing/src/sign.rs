//! Signing a plugin file: a prehashed minisign signature with the v1 trusted comment.

use crate::keys::{key_id_hex, load_secret_key};
use crate::metadata::{format_trusted_comment, UtcTime, PLUGIN_MAX_BYTES};
use crate::SigningError;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What [`sign_plugin`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPlugin {
    /// The signature file, `PLUGIN.minisig`.
    pub signature_path: PathBuf,
    /// The signed metadata (the trusted comment).
    pub trusted_comment: String,
    /// Id of the key that signed, as minisign prints it.
    pub key_id: String,
}

/// Signs `plugin_path` and writes `PLUGIN.minisig` beside it; returns the signature's path.
///
/// The signature is a standard prehashed (`ED`) minisign signature whose trusted comment is
/// `abkit-plugin v1 name=.. version=.. sha256=.. [expires=..]`, so `minisign -V` verifies it.
/// `password` is needed only for an encrypted key (nothing is asked on the terminal here).
/// The name and the expiry are checked before anything is signed; an expiry in the past is
/// refused. An existing signature file is replaced atomically.
pub fn sign(
    key_file: &Path,
    password: Option<String>,
    plugin_path: &Path,
    name: &str,
    version: u64,
    expires: Option<UtcTime>,
) -> Result<PathBuf, SigningError> {
    Ok(sign_plugin(key_file, password, plugin_path, name, version, expires)?.signature_path)
}

/// [`sign`], returning what was signed as well.
pub fn sign_plugin(
    key_file: &Path,
    password: Option<String>,
    plugin_path: &Path,
    name: &str,
    version: u64,
    expires: Option<UtcTime>,
) -> Result<SignedPlugin, SigningError> {
    // Validate everything that does not need the key or the file first.
    format_trusted_comment(name, version, &[0; 32], expires)?;
    if let Some(t) = expires {
        if t.is_before(SystemTime::now()) {
            return Err(SigningError::ExpiresInPast {
                expires: t.to_string(),
            });
        }
    }
    let sk = load_secret_key(key_file, password)?;
    let pk = minisign::PublicKey::from_secret_key(&sk).map_err(SigningError::minisign)?;
    let key_id = key_id_hex(sk.keynum());

    // Read the plugin once: the digest and the signature cover the very same bytes.
    let bytes = read_plugin(plugin_path)?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    let trusted_comment = format_trusted_comment(name, version, &digest, expires)?;
    let untrusted = format!("signature from abkit secret key {key_id}");
    // Passing the public half makes minisign check the signature it made: a damaged key fails here.
    let sig = minisign::sign(
        Some(&pk),
        &sk,
        bytes.as_slice(),
        Some(&trusted_comment),
        Some(&untrusted),
    )
    .map_err(SigningError::minisign)?;

    let mut sig_path = plugin_path.as_os_str().to_owned();
    sig_path.push(".minisig");
    let signature_path = PathBuf::from(sig_path);
    write_replacing(&signature_path, sig.into_string().as_bytes())?;
    Ok(SignedPlugin {
        signature_path,
        trusted_comment,
        key_id,
    })
}

/// Reads the plugin to sign: a regular file, not a symlink (the loader refuses symlinks too),
/// at most [`PLUGIN_MAX_BYTES`].
fn read_plugin(path: &Path) -> Result<Vec<u8>, SigningError> {
    read_regular_capped(path, PLUGIN_MAX_BYTES, false).map_err(|e| match e {
        FileReadError::NotFound => SigningError::PluginNotFound {
            path: path.to_path_buf(),
        },
        FileReadError::TooLarge { size } => SigningError::PluginTooLarge {
            path: path.to_path_buf(),
            size,
            limit: PLUGIN_MAX_BYTES,
        },
        other => SigningError::Io {
            path: path.to_path_buf(),
            source: other.into_io_error(),
        },
    })
}

/// Why a bounded read of a key or plugin file failed. The caller adds the path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileReadError {
    /// Nothing exists at the path.
    #[error("it does not exist")]
    NotFound,
    /// The path is a symlink and links are refused for this file.
    #[error("it is a symbolic link, which is refused here; pass the file itself")]
    Symlink,
    /// A FIFO, a device, a socket or a directory.
    #[error("it is {what}, not a regular file, so it was not read; pass a regular file")]
    NotRegular {
        /// What it is, with its article.
        what: &'static str,
    },
    /// Over the cap.
    #[error("it is {size} bytes or more, over the limit")]
    TooLarge {
        /// Its size, or how much was read before stopping.
        size: u64,
    },
    /// Opening, `fstat` or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl FileReadError {
    /// As an `io::Error` with this message (for [`SigningError::Io`]).
    pub(crate) fn into_io_error(self) -> std::io::Error {
        match self {
            FileReadError::Io(e) => e,
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

/// Reads a regular file of at most `cap` bytes without ever blocking: opened with
/// `O_NONBLOCK` (a FIFO does not wait for a writer) and, unless `follow_symlinks`,
/// `O_NOFOLLOW`; the type and size checked with `fstat` on the opened descriptor (a FIFO,
/// `/dev/zero` or a directory is refused at once); at most `cap + 1` bytes read.
pub(crate) fn read_regular_capped(
    path: &Path,
    cap: u64,
    follow_symlinks: bool,
) -> Result<Vec<u8>, FileReadError> {
    use rustix::fs::{FileType, Mode, OFlags};
    use rustix::io::Errno;
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    if !follow_symlinks {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|errno| match errno {
        Errno::NOENT => FileReadError::NotFound,
        Errno::LOOP
            if !follow_symlinks
                && fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) =>
        {
            FileReadError::Symlink
        }
        // open(2) of a socket.
        Errno::NXIO => FileReadError::NotRegular { what: "a socket" },
        other => FileReadError::Io(other.into()),
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(std::io::Error::from)?;
    let what = match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => None,
        FileType::Directory => Some("a directory"),
        FileType::Fifo => Some("a FIFO (named pipe)"),
        FileType::CharacterDevice => Some("a character device"),
        FileType::BlockDevice => Some("a block device"),
        FileType::Socket => Some("a socket"),
        _ => Some("a special file"),
    };
    if let Some(what) = what {
        return Err(FileReadError::NotRegular { what });
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size > cap {
        return Err(FileReadError::TooLarge { size });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    fs::File::from(fd)
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(FileReadError::TooLarge {
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// Writes a temporary file beside `path`, syncs it and renames it over `path`.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), SigningError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        SigningError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keygen;

    #[test]
    fn signing_writes_a_prehashed_signature_with_the_v1_comment() {
        let dir = tempfile::tempdir().unwrap();
        let (pub_path, key) = keygen(dir.path(), "k", None).unwrap();
        let plugin = dir.path().join("libx.so");
        fs::write(&plugin, b"not really a library").unwrap();
        let expires: UtcTime = "2999-01-01T00:00:00Z".parse().unwrap();
        let signed = sign_plugin(&key, None, &plugin, "switchback", 3, Some(expires)).unwrap();
        assert_eq!(signed.signature_path, dir.path().join("libx.so.minisig"));
        let digest = crate::metadata::hex(&Sha256::digest(b"not really a library"));
        assert_eq!(
            signed.trusted_comment,
            format!("abkit-plugin v1 name=switchback version=3 sha256={digest} expires=2999-01-01T00:00:00Z")
        );
        let text = fs::read_to_string(&signed.signature_path).unwrap();
        let sig_box = minisign::SignatureBox::from_string(&text).unwrap();
        assert!(sig_box.is_prehashed());
        assert_eq!(sig_box.trusted_comment().unwrap(), signed.trusted_comment);
        let pk = minisign::PublicKey::from_file(&pub_path).unwrap();
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
    fn keys_without_checksum_sign_and_damaged_ones_do_not() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = keygen(dir.path(), "k", None).unwrap();
        let plugin = dir.path().join("p.so");
        fs::write(&plugin, b"x").unwrap();
        let text = fs::read_to_string(&key).unwrap();
        let mut raw = b64.decode(text.lines().nth(1).unwrap()).unwrap();
        raw[126..].fill(0); // as `minisign -G -W` writes it
        let rewrite = |raw: &[u8]| {
            fs::write(&key, format!("untrusted comment: k\n{}\n", b64.encode(raw))).unwrap()
        };
        rewrite(&raw);
        sign(&key, None, &plugin, "ok", 1, None).unwrap();
        raw[70] ^= 1; // damage the seed
        rewrite(&raw);
        let e = sign(&key, None, &plugin, "ok", 2, None).unwrap_err();
        assert!(matches!(e, SigningError::Minisign { .. }), "{e}");
    }

    #[test]
    fn fifos_devices_and_symlinked_plugins_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = keygen(dir.path(), "k", None).unwrap();
        let plugin = dir.path().join("p.so");
        fs::write(&plugin, b"x").unwrap();
        let fifo = dir.path().join("fifo.key");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let started = std::time::Instant::now();
        // Before: opening the FIFO waited for a writer forever. On a thread, so that a
        // regression fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        let (f, p) = (fifo.clone(), plugin.clone());
        std::thread::spawn(move || tx.send(sign(&f, None, &p, "ok", 1, None)));
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("blocked on a FIFO")
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("fifo.key") && msg.contains("FIFO"), "{msg}");
        assert!(msg.contains("not a regular file"), "{msg}");
        // Before: /dev/zero was read up to the cap (256 MiB) and refused as too large.
        let e = sign(&key, None, Path::new("/dev/zero"), "ok", 1, None).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let (tx, rx) = std::sync::mpsc::channel();
        let (k, f) = (key.clone(), fifo.clone());
        std::thread::spawn(move || tx.send(sign(&k, None, &f, "ok", 1, None)));
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("blocked on a FIFO")
            .unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));

        let link = dir.path().join("link.so");
        std::os::unix::fs::symlink(&plugin, &link).unwrap();
        let e = sign(&key, None, &link, "ok", 1, None).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // The secret key may be a symlink (secret stores mount keys that way).
        let key_link = dir.path().join("key-link.key");
        std::os::unix::fs::symlink(&key, &key_link).unwrap();
        sign(&key_link, None, &plugin, "ok", 1, None).unwrap();
    }

    #[test]
    fn bad_input_is_refused_before_signing() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = keygen(dir.path(), "k", None).unwrap();
        let plugin = dir.path().join("p.so");
        fs::write(&plugin, b"x").unwrap();
        let past: UtcTime = "2001-01-01T00:00:00Z".parse().unwrap();
        let cases = [
            sign(&key, None, &plugin, "Bad Name", 1, None).unwrap_err(),
            sign(&key, None, &plugin, "ok", 1, Some(past)).unwrap_err(),
            sign(&key, None, &dir.path().join("missing.so"), "ok", 1, None).unwrap_err(),
            sign(
                &dir.path().join("missing.key"),
                None,
                &plugin,
                "ok",
                1,
                None,
            )
            .unwrap_err(),
        ];
        assert!(
            matches!(cases[0], SigningError::InvalidName { .. }),
            "{}",
            cases[0]
        );
        assert!(
            matches!(cases[1], SigningError::ExpiresInPast { .. }),
            "{}",
            cases[1]
        );
        assert!(
            matches!(cases[2], SigningError::PluginNotFound { .. }),
            "{}",
            cases[2]
        );
        assert!(
            matches!(cases[3], SigningError::KeyNotFound { .. }),
            "{}",
            cases[3]
        );
        assert!(!dir.path().join("p.so.minisig").exists());
    }
}
