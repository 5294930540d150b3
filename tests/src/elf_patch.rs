//! Hostile variants of real plugin libraries, made by editing their bytes: a dynamic-section
//! entry rewritten to point outside the file (row 32), or dependencies added with `patchelf`
//! (row 31). The results are signed like any plugin, so they reach the loader's ELF checks.

use object::elf::{FileHeader64, PT_DYNAMIC};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;
use std::path::Path;
use std::process::Command;

/// The file offsets of the dynamic entries of `lib` with `tag`, in order.
pub fn dynamic_entries(lib: &[u8], tag: u32) -> Vec<usize> {
    let header = FileHeader64::<Endianness>::parse(lib).expect("an ELF64 file");
    let e = header.endian().expect("endianness");
    let Some(ph) = header
        .program_headers(e, lib)
        .expect("program headers")
        .iter()
        .find(|p| p.p_type(e) == PT_DYNAMIC)
    else {
        return Vec::new();
    };
    let (off, size) = (ph.p_offset(e) as usize, ph.p_filesz(e) as usize);
    (off..off + size)
        .step_by(16)
        .filter(|&at| {
            u64::from_le_bytes(lib[at..at + 8].try_into().unwrap_or_default()) == u64::from(tag)
        })
        .collect()
}

/// A copy of `lib` with the value of the first dynamic entry `tag` set to `value`.
pub fn with_dynamic_value(lib: &[u8], tag: u32, value: u64) -> Vec<u8> {
    let at = *dynamic_entries(lib, tag)
        .first()
        .unwrap_or_else(|| panic!("no dynamic entry with tag {tag:#x}"));
    let mut out = lib.to_vec();
    out[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
    out
}

/// Runs `patchelf ARGS FILE` (Debian's `patchelf`; `.ci/test` installs it).
pub fn patchelf(file: &Path, args: &[&str]) {
    let out = Command::new("patchelf")
        .args(args)
        .arg(file)
        .output()
        .expect("the `patchelf` tool is needed (apt-get install patchelf; .ci/test installs it)");
    assert!(
        out.status.success(),
        "patchelf {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
