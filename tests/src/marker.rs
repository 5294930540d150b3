//! The constructor-marker fixture (`tests/fixtures/ctor-marker`): a plugin whose ELF constructor
//! appends to a marker file as soon as the dynamic loader maps it. Each copy gets its own marker
//! path patched into the library's placeholder, so a test knows exactly which copy ran.

use std::path::{Path, PathBuf};

const PLACEHOLDER: &[u8] = b"@@ABKIT-MARKER-PATH-PLACEHOLDER@@";

/// Writes to `dest` (mode 0644) a copy of the ctor-marker fixture whose constructor appends to
/// `marker`; returns `dest`.
pub fn marker_library(dest: &Path, marker: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let mut bytes = std::fs::read(crate::fixtures::fixture(crate::fixtures::fx::CTOR_MARKER))
        .expect("read ctor-marker fixture");
    let at = bytes
        .windows(PLACEHOLDER.len())
        .position(|w| w == PLACEHOLDER)
        .expect("the marker placeholder is in the fixture");
    let path = marker.to_str().expect("UTF-8 marker path").as_bytes();
    assert!(path.len() < 500, "marker path too long");
    bytes[at..at + path.len()].copy_from_slice(path);
    bytes[at + path.len()] = 0;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    let tmp = dest.with_extension("tmp-marker");
    std::fs::write(&tmp, bytes).expect("write marker library");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::rename(&tmp, dest).expect("rename marker library");
    dest.to_path_buf()
}

/// Panics if the marker file exists: the library that writes it ran.
#[track_caller]
pub fn assert_never_ran(marker: &Path) {
    if let Ok(text) = std::fs::read_to_string(marker) {
        panic!(
            "UNSIGNED CODE RAN: the constructor of a library that must never be mapped wrote {}: {text}",
            marker.display()
        );
    }
}

/// Distinct sealed images (by inode) this process maps under the memfd name `abkit:<name>`:
/// how a test sees whether, and how often, a plugin's bytes were mapped here.
pub fn images_named(name: &str) -> usize {
    let needle = format!("/memfd:abkit:{name} ");
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    let inodes: std::collections::BTreeSet<&str> = maps
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect();
    inodes.len()
}
