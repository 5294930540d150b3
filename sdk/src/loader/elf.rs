//! Structural validation of an ELF shared object before `dlopen`.
//!
//! `dlopen` maps segments straight from the file: a truncated library (a segment that claims
//! bytes past the end of the file) kills the process with SIGBUS inside the dynamic loader,
//! where no Rust code can recover. So every header and every loadable segment is checked to
//! lie inside the file first, on the exact bytes that were verified.

use object::elf::{FileHeader64, ET_DYN, PT_LOAD, SHT_NOBITS};
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::Endianness;

/// Why bytes are not a loadable shared library for this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// Not an ELF file at all (e.g. a text file).
    #[error("not an ELF shared library ({0})")]
    NotElf(String),
    /// An ELF file whose structure points outside the file (truncated or corrupt).
    #[error("malformed ELF: {0}")]
    Malformed(String),
    /// An ELF file for another machine or of another type.
    #[error("not a shared library for this machine: {0}")]
    WrongKind(String),
}

/// The ELF machine of this build (EM_X86_64 / EM_AARCH64).
fn host_machine() -> Option<u16> {
    if cfg!(target_arch = "x86_64") {
        Some(object::elf::EM_X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(object::elf::EM_AARCH64)
    } else {
        None
    }
}

/// Checks that `data` is a 64-bit ELF shared object for this machine whose program headers,
/// section headers, loadable segments and sections all lie inside `data`.
pub fn validate(data: &[u8]) -> Result<(), ElfError> {
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf(
            "no ELF magic at the start of the file".into(),
        ));
    }
    let header = FileHeader64::<Endianness>::parse(data)
        .map_err(|e| ElfError::Malformed(format!("file header: {e}")))?;
    let endian = header
        .endian()
        .map_err(|e| ElfError::Malformed(format!("endianness: {e}")))?;
    if header.e_type(endian) != ET_DYN {
        return Err(ElfError::WrongKind(format!(
            "ELF type {} is not ET_DYN",
            header.e_type(endian)
        )));
    }
    if let Some(machine) = host_machine() {
        if header.e_machine(endian) != machine {
            return Err(ElfError::WrongKind(format!(
                "ELF machine {} is not this host's {machine}",
                header.e_machine(endian)
            )));
        }
    }
    let len = data.len() as u64;
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|e| ElfError::Malformed(format!("program headers: {e}")))?;
    if phdrs.is_empty() {
        return Err(ElfError::Malformed("no program headers".into()));
    }
    let mut loads = 0;
    for (i, ph) in phdrs.iter().enumerate() {
        let (off, size) = (ph.p_offset(endian), ph.p_filesz(endian));
        let end = off
            .checked_add(size)
            .ok_or_else(|| ElfError::Malformed(format!("segment {i}: offset overflow")))?;
        if ph.p_type(endian) == PT_LOAD {
            loads += 1;
            if end > len {
                return Err(ElfError::Malformed(format!(
                    "loadable segment {i} ends at byte {end} but the file has {len} bytes (truncated?)"
                )));
            }
        }
    }
    if loads == 0 {
        return Err(ElfError::Malformed("no loadable segment".into()));
    }
    let sections = header
        .sections(endian, data)
        .map_err(|e| ElfError::Malformed(format!("section headers: {e}")))?;
    for (i, sh) in sections.iter().enumerate() {
        if sh.sh_type(endian) == SHT_NOBITS {
            continue;
        }
        let end = sh.sh_offset(endian).checked_add(sh.sh_size(endian));
        if end.is_none_or(|e| e > len) {
            return Err(ElfError::Malformed(format!(
                "section {i} lies past the end of the file (truncated?)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn own_library() -> Option<Vec<u8>> {
        // Any shared library of this machine will do: the C library is always there.
        [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/libc.so.6",
        ]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
    }

    #[test]
    fn a_real_shared_library_passes() {
        if let Some(lib) = own_library() {
            validate(&lib).unwrap();
        }
    }

    #[test]
    fn every_truncation_of_a_real_library_is_refused_without_crashing() {
        let Some(lib) = own_library() else { return };
        for cut in [0, 3, 10, 63, 64, 200, 4096, lib.len() / 2, lib.len() - 1] {
            assert!(validate(&lib[..cut]).is_err(), "truncated at {cut} passed");
        }
    }

    #[test]
    fn text_is_not_elf() {
        assert!(matches!(
            validate(b"hello, I am not a library\n"),
            Err(ElfError::NotElf(_))
        ));
    }
}
