//! Structural validation of an ELF shared object before `dlopen`, on the exact verified bytes.
//!
//! `dlopen` trusts the file it maps. A truncated library (a segment that claims bytes past the
//! end of the file) kills the process with SIGBUS inside the dynamic loader; a dynamic section
//! whose pointers lead outside the mapped segments (a corrupt `DT_STRTAB`, `DT_SYMTAB`,
//! `DT_NEEDED` offset, relocation table or `DT_INIT_ARRAY`) kills it with SIGSEGV; and a
//! `DT_NEEDED` or `DT_RUNPATH` makes the loader pull in, and run the constructors of, a library
//! nobody signed. No Rust code can recover from any of these once `dlopen` starts, so
//! [`validate`] walks everything the dynamic loader reads during `dlopen` and refuses first:
//!
//! * the file header, every program header, every loadable segment and section inside the file;
//! * exactly one `PT_DYNAMIC`, inside the file and inside a loadable segment, ending in `DT_NULL`;
//! * every address the dynamic section names (string and symbol tables, hash tables, relocation
//!   tables, version tables, init/fini functions and arrays) inside a loadable segment, with its
//!   size; string offsets (`DT_NEEDED`, `DT_SONAME`, version names, symbol names) inside the
//!   string table and NUL-terminated there;
//! * every relocation's target inside a loadable segment and its symbol index inside the symbol
//!   table; every defined symbol's value inside a loadable segment.
//!
//! [`check_dependencies`] then applies the dependency policy: `DT_RPATH`/`DT_RUNPATH` are
//! refused, and each `DT_NEEDED` must be a plain name on the allowlist
//! ([`DEFAULT_ALLOWED_LIBRARIES`] unless `[trust] allowed_libraries` says otherwise).

use object::elf::{
    FileHeader64, DT_FINI, DT_FINI_ARRAY, DT_FINI_ARRAYSZ, DT_GNU_HASH, DT_HASH, DT_INIT,
    DT_INIT_ARRAY, DT_INIT_ARRAYSZ, DT_JMPREL, DT_NEEDED, DT_NULL, DT_PLTGOT, DT_PLTRELSZ,
    DT_PREINIT_ARRAY, DT_PREINIT_ARRAYSZ, DT_REL, DT_RELA, DT_RELASZ, DT_RELSZ, DT_RPATH,
    DT_RUNPATH, DT_SONAME, DT_STRSZ, DT_STRTAB, DT_SYMTAB, DT_VERDEF, DT_VERDEFNUM, DT_VERNEED,
    DT_VERNEEDNUM, DT_VERSYM, ET_DYN, PT_DYNAMIC, PT_LOAD, SHT_NOBITS,
};
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::Endianness;

/// `DT_RELRSZ` and `DT_RELR` (packed relative relocations; not yet named by `object`).
const DT_RELRSZ: u32 = 35;
const DT_RELR: u32 = 36;

/// Libraries a plugin may need when `[trust] allowed_libraries` is not set: the C runtime, the
/// unwinder Rust's panics need, and the dynamic loader itself. Plain sonames, never paths.
pub const DEFAULT_ALLOWED_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
];

/// Most dynamic entries, relocations and symbols walked before a file is called malformed
/// (a real plugin has a few thousand; the cap bounds the work on hostile input).
const MAX_TABLE_ENTRIES: u64 = 8 << 20;

/// Why bytes are not a loadable shared library for this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// Not an ELF file at all (e.g. a text file).
    #[error("not an ELF shared library ({0})")]
    NotElf(String),
    /// An ELF file whose structure points outside the file or its segments (truncated or corrupt).
    #[error("malformed ELF: {0}")]
    Malformed(String),
    /// An ELF file for another machine or of another type.
    #[error("not a shared library for this machine: {0}")]
    WrongKind(String),
    /// The library would make the dynamic loader load another, unsigned library.
    #[error("disallowed dependency: {0}")]
    DisallowedDependency(String),
}

/// What the dynamic section of a validated library asks of the dynamic loader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicInfo {
    /// `DT_NEEDED` entries, in order.
    pub needed: Vec<String>,
    /// `DT_RPATH`, if any.
    pub rpath: Option<String>,
    /// `DT_RUNPATH`, if any.
    pub runpath: Option<String>,
    /// `DT_SONAME`, if any.
    pub soname: Option<String>,
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

fn malformed(detail: impl Into<String>) -> ElfError {
    ElfError::Malformed(detail.into())
}

/// Checks that `data` is a 64-bit little-endian ELF shared object for this machine that the
/// dynamic loader can map and link without reading outside it (see the module doc), and returns
/// what its dynamic section asks for. Pure: reads `data` only, never runs or maps anything.
pub fn validate(data: &[u8]) -> Result<DynamicInfo, ElfError> {
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf(
            "no ELF magic at the start of the file".into(),
        ));
    }
    let header = FileHeader64::<Endianness>::parse(data)
        .map_err(|e| malformed(format!("file header: {e}")))?;
    let endian = header
        .endian()
        .map_err(|e| malformed(format!("endianness: {e}")))?;
    if endian != Endianness::Little {
        return Err(ElfError::WrongKind("big-endian ELF".into()));
    }
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
        .map_err(|e| malformed(format!("program headers: {e}")))?;
    if phdrs.is_empty() {
        return Err(malformed("no program headers"));
    }
    let mut segments = Vec::new();
    let mut dynamic = None;
    for (i, ph) in phdrs.iter().enumerate() {
        let (off, size) = (ph.p_offset(endian), ph.p_filesz(endian));
        let end = off
            .checked_add(size)
            .ok_or_else(|| malformed(format!("segment {i}: offset overflow")))?;
        match ph.p_type(endian) {
            PT_LOAD => {
                if end > len {
                    return Err(malformed(format!(
                        "loadable segment {i} ends at byte {end} but the file has {len} bytes (truncated?)"
                    )));
                }
                let (vaddr, memsz) = (ph.p_vaddr(endian), ph.p_memsz(endian));
                if memsz < size || vaddr.checked_add(memsz).is_none() {
                    return Err(malformed(format!(
                        "loadable segment {i}: memory size {memsz} below file size {size} or address overflow"
                    )));
                }
                segments.push(Segment {
                    vaddr,
                    memsz,
                    offset: off,
                    filesz: size,
                });
            }
            PT_DYNAMIC => {
                if dynamic.is_some() {
                    return Err(malformed("more than one PT_DYNAMIC segment"));
                }
                if end > len {
                    return Err(malformed(format!(
                        "the dynamic segment ends at byte {end} but the file has {len} bytes"
                    )));
                }
                dynamic = Some((ph.p_vaddr(endian), size));
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(malformed("no loadable segment"));
    }
    let sections = header
        .sections(endian, data)
        .map_err(|e| malformed(format!("section headers: {e}")))?;
    for (i, sh) in sections.iter().enumerate() {
        if sh.sh_type(endian) == SHT_NOBITS {
            continue;
        }
        let end = sh.sh_offset(endian).checked_add(sh.sh_size(endian));
        if end.is_none_or(|e| e > len) {
            return Err(malformed(format!(
                "section {i} lies past the end of the file (truncated?)"
            )));
        }
    }
    let (dyn_vaddr, dyn_size) =
        dynamic.ok_or_else(|| malformed("no PT_DYNAMIC segment: not a dynamic shared object"))?;
    let image = Image { data, segments };
    DynamicSection::read(&image, dyn_vaddr, dyn_size)?.check(&image)
}

/// Applies the dependency policy to a validated library: no `DT_RPATH`/`DT_RUNPATH`, and every
/// `DT_NEEDED` a plain soname on `allowed` (a name with a `/` is a path and never allowed).
pub fn check_dependencies<S: AsRef<str>>(
    info: &DynamicInfo,
    allowed: &[S],
) -> Result<(), ElfError> {
    if let Some(p) = &info.rpath {
        return Err(ElfError::DisallowedDependency(format!(
            "DT_RPATH \"{}\": a plugin may not choose where the loader finds libraries",
            clip(p)
        )));
    }
    if let Some(p) = &info.runpath {
        return Err(ElfError::DisallowedDependency(format!(
            "DT_RUNPATH \"{}\": a plugin may not choose where the loader finds libraries",
            clip(p)
        )));
    }
    for n in &info.needed {
        if n.contains('/') || !allowed.iter().any(|a| a.as_ref() == n) {
            return Err(ElfError::DisallowedDependency(format!(
                "DT_NEEDED \"{}\" is not on the allowlist ({}); only these system libraries may be \
                 pulled in unsigned (extend [trust] allowed_libraries if this one is trusted)",
                clip(n),
                allowed
                    .iter()
                    .map(AsRef::as_ref)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

fn clip(s: &str) -> String {
    crate::status::clip_plugin_text(s)
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
}

/// The file with its loadable segments: translates addresses the dynamic loader will use.
struct Image<'a> {
    data: &'a [u8],
    segments: Vec<Segment>,
}

impl<'a> Image<'a> {
    /// The file bytes backing `[vaddr, vaddr + size)`, which must lie in the file-backed part of
    /// one loadable segment (the loader reads them right after mapping).
    fn bytes(&self, what: &str, vaddr: u64, size: u64) -> Result<&'a [u8], ElfError> {
        let end = vaddr
            .checked_add(size)
            .ok_or_else(|| malformed(format!("{what}: address overflow")))?;
        for s in &self.segments {
            if vaddr >= s.vaddr && end <= s.vaddr + s.filesz {
                let start = s.offset + (vaddr - s.vaddr);
                let (start, stop) = (start as usize, (start + size) as usize);
                return self.data.get(start..stop).ok_or_else(|| {
                    malformed(format!("{what}: bytes {start}..{stop} outside the file"))
                });
            }
        }
        Err(malformed(format!(
            "{what} at {vaddr:#x} (+{size} bytes) lies outside every loadable segment's file data"
        )))
    }

    /// Whether `[vaddr, vaddr + size)` lies in the memory image of one loadable segment.
    fn mapped(&self, what: &str, vaddr: u64, size: u64) -> Result<(), ElfError> {
        let end = vaddr.checked_add(size);
        let inside = end.is_some_and(|end| {
            self.segments
                .iter()
                .any(|s| vaddr >= s.vaddr && end <= s.vaddr + s.memsz)
        });
        if inside {
            Ok(())
        } else {
            Err(malformed(format!(
                "{what} at {vaddr:#x} (+{size} bytes) lies outside every loadable segment"
            )))
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

/// The dynamic entries the loader acts on (each tag at most once, except `DT_NEEDED`).
#[derive(Default)]
struct DynamicSection {
    needed: Vec<u64>,
    tags: Vec<(u32, u64)>,
}

impl DynamicSection {
    fn read(image: &Image<'_>, vaddr: u64, size: u64) -> Result<DynamicSection, ElfError> {
        if size % 16 != 0 {
            return Err(malformed(format!(
                "dynamic section size {size} is not a multiple of 16"
            )));
        }
        let bytes = image.bytes("the dynamic section", vaddr, size)?;
        let mut out = DynamicSection::default();
        let mut terminated = false;
        for entry in bytes.chunks_exact(16).take(MAX_TABLE_ENTRIES as usize) {
            let (tag, val) = (u64_at(entry, 0), u64_at(entry, 8));
            if tag == u64::from(DT_NULL) {
                terminated = true;
                break;
            }
            if tag == u64::from(DT_NEEDED) {
                out.needed.push(val);
            } else if let Ok(tag) = u32::try_from(tag) {
                if out.tags.iter().any(|&(t, _)| t == tag) && is_checked_tag(tag) {
                    return Err(malformed(format!("dynamic tag {tag:#x} appears twice")));
                }
                out.tags.push((tag, val));
            }
        }
        if !terminated {
            return Err(malformed("the dynamic section has no DT_NULL terminator"));
        }
        Ok(out)
    }

    fn get(&self, tag: u32) -> Option<u64> {
        self.tags.iter().find(|&&(t, _)| t == tag).map(|&(_, v)| v)
    }

    fn sized(&self, addr: u32, size: u32, what: &str) -> Result<Option<(u64, u64)>, ElfError> {
        match (self.get(addr), self.get(size)) {
            (None, _) => Ok(None),
            (Some(a), Some(s)) => Ok(Some((a, s))),
            (Some(_), None) => Err(malformed(format!("{what} without its size entry"))),
        }
    }

    fn check(&self, image: &Image<'_>) -> Result<DynamicInfo, ElfError> {
        let strtab_addr = self
            .get(DT_STRTAB)
            .ok_or_else(|| malformed("no DT_STRTAB"))?;
        let strsz = self.get(DT_STRSZ).ok_or_else(|| malformed("no DT_STRSZ"))?;
        let strtab = image.bytes("DT_STRTAB", strtab_addr, strsz)?;
        let string = |what: &str, off: u64| -> Result<String, ElfError> {
            let rest = usize::try_from(off)
                .ok()
                .and_then(|o| strtab.get(o..))
                .ok_or_else(|| {
                    malformed(format!(
                        "{what}: string offset {off} outside the {strsz}-byte string table"
                    ))
                })?;
            let nul = rest.iter().position(|&b| b == 0).ok_or_else(|| {
                malformed(format!("{what}: string at {off} is not NUL-terminated"))
            })?;
            Ok(String::from_utf8_lossy(&rest[..nul]).into_owned())
        };
        let mut info = DynamicInfo::default();
        for &n in &self.needed {
            info.needed.push(string("DT_NEEDED", n)?);
        }
        info.rpath = self
            .get(DT_RPATH)
            .map(|o| string("DT_RPATH", o))
            .transpose()?;
        info.runpath = self
            .get(DT_RUNPATH)
            .map(|o| string("DT_RUNPATH", o))
            .transpose()?;
        info.soname = self
            .get(DT_SONAME)
            .map(|o| string("DT_SONAME", o))
            .transpose()?;

        // Symbols: the table's length is implied by the hash tables.
        let symtab = self
            .get(DT_SYMTAB)
            .ok_or_else(|| malformed("no DT_SYMTAB"))?;
        let nsyms = self.symbol_count(image)?;
        let syms = image.bytes("DT_SYMTAB", symtab, nsyms.saturating_mul(24))?;
        for (i, sym) in syms.chunks_exact(24).enumerate() {
            let name = u32_at(sym, 0);
            string(&format!("symbol {i}"), u64::from(name))?;
            let shndx = u16_at(sym, 6);
            let value = u64_at(sym, 8);
            // Defined, non-absolute, non-TLS symbols are addresses the loader hands out (a
            // symbol may sit at the very end of a segment, like `_end`).
            let tls = sym[4] & 0xf == object::elf::STT_TLS;
            if shndx != object::elf::SHN_UNDEF && shndx < object::elf::SHN_LORESERVE && !tls {
                image.mapped(&format!("symbol {i}"), value, 0)?;
            }
        }
        if let Some(versym) = self.get(DT_VERSYM) {
            image.bytes("DT_VERSYM", versym, nsyms.saturating_mul(2))?;
        }
        self.check_verneed(image, &string)?;
        self.check_verdef(image, &string)?;

        // Relocation tables: every target inside the image, every symbol index inside the table.
        if let Some((addr, size)) = self.sized(DT_RELA, DT_RELASZ, "DT_RELA")? {
            check_relocations(image, "DT_RELA", addr, size, 24, nsyms)?;
        }
        if let Some((addr, size)) = self.sized(DT_REL, DT_RELSZ, "DT_REL")? {
            check_relocations(image, "DT_REL", addr, size, 16, nsyms)?;
        }
        if let Some((addr, size)) = self.sized(DT_JMPREL, DT_PLTRELSZ, "DT_JMPREL")? {
            let entry = if self.get(object::elf::DT_PLTREL) == Some(u64::from(DT_REL)) {
                16
            } else {
                24
            };
            check_relocations(image, "DT_JMPREL", addr, size, entry, nsyms)?;
        }
        if let Some((addr, size)) = self.sized(DT_RELR, DT_RELRSZ, "DT_RELR")? {
            check_relr(image, addr, size)?;
        }

        // Code and data the loader calls or writes.
        for (tag, size_tag, what) in [
            (DT_INIT_ARRAY, DT_INIT_ARRAYSZ, "DT_INIT_ARRAY"),
            (DT_FINI_ARRAY, DT_FINI_ARRAYSZ, "DT_FINI_ARRAY"),
            (DT_PREINIT_ARRAY, DT_PREINIT_ARRAYSZ, "DT_PREINIT_ARRAY"),
        ] {
            if let Some((addr, size)) = self.sized(tag, size_tag, what)? {
                image.mapped(what, addr, size)?;
            }
        }
        for (tag, what) in [
            (DT_INIT, "DT_INIT"),
            (DT_FINI, "DT_FINI"),
            (DT_PLTGOT, "DT_PLTGOT"),
        ] {
            if let Some(addr) = self.get(tag) {
                image.mapped(what, addr, 1)?;
            }
        }
        if let Some(hash) = self.get(DT_HASH) {
            image.bytes("DT_HASH", hash, 8)?;
        }
        Ok(info)
    }

    /// Symbols in DT_SYMTAB, from DT_HASH (nchain) or by walking DT_GNU_HASH's chains, with
    /// every hash-table byte inside the image.
    fn symbol_count(&self, image: &Image<'_>) -> Result<u64, ElfError> {
        let mut count = None;
        if let Some(hash) = self.get(DT_HASH) {
            let head = image.bytes("DT_HASH", hash, 8)?;
            let (nbucket, nchain) = (u64::from(u32_at(head, 0)), u64::from(u32_at(head, 4)));
            image.bytes("DT_HASH", hash, 8 + 4 * (nbucket + nchain))?;
            count = Some(nchain);
        }
        if let Some(gnu) = self.get(DT_GNU_HASH) {
            let head = image.bytes("DT_GNU_HASH", gnu, 16)?;
            let nbuckets = u64::from(u32_at(head, 0));
            let symoffset = u64::from(u32_at(head, 4));
            let bloom = u64::from(u32_at(head, 8));
            if bloom == 0 || !bloom.is_power_of_two() {
                return Err(malformed("DT_GNU_HASH: bloom size is not a power of two"));
            }
            let buckets_at = gnu + 16 + 8 * bloom;
            let buckets = image.bytes("DT_GNU_HASH buckets", buckets_at, 4 * nbuckets)?;
            let mut last = 0u64;
            for b in buckets.chunks_exact(4) {
                last = last.max(u64::from(u32_at(b, 0)));
            }
            let chains_at = buckets_at + 4 * nbuckets;
            let mut n = symoffset;
            if last >= symoffset {
                // Walk the chain of the highest bucket to its end (low bit set).
                let mut i = last;
                loop {
                    if i - symoffset > MAX_TABLE_ENTRIES {
                        return Err(malformed("DT_GNU_HASH: chain does not end"));
                    }
                    let word =
                        image.bytes("DT_GNU_HASH chain", chains_at + 4 * (i - symoffset), 4)?;
                    if u32_at(word, 0) & 1 == 1 {
                        break;
                    }
                    i += 1;
                }
                n = i + 1;
            }
            count = Some(count.map_or(n, |c: u64| c.max(n)));
        }
        let n = count.ok_or_else(|| malformed("neither DT_HASH nor DT_GNU_HASH"))?;
        if n > MAX_TABLE_ENTRIES {
            return Err(malformed(format!("{n} symbols is implausibly many")));
        }
        Ok(n)
    }

    fn check_verneed(
        &self,
        image: &Image<'_>,
        string: &dyn Fn(&str, u64) -> Result<String, ElfError>,
    ) -> Result<(), ElfError> {
        let Some(mut at) = self.get(DT_VERNEED) else {
            return Ok(());
        };
        let num = self.get(DT_VERNEEDNUM).unwrap_or(0).min(MAX_TABLE_ENTRIES);
        for i in 0..num {
            let e = image.bytes("DT_VERNEED", at, 16)?;
            string(&format!("version need {i}"), u64::from(u32_at(e, 4)))?;
            let mut aux = at + u64::from(u32_at(e, 8));
            for _ in 0..u16_at(e, 2) {
                let a = image.bytes("DT_VERNEED aux", aux, 16)?;
                string(&format!("version need {i} name"), u64::from(u32_at(a, 8)))?;
                match u32_at(a, 12) {
                    0 => break,
                    next => aux += u64::from(next),
                }
            }
            match u32_at(e, 12) {
                0 => break,
                next => at += u64::from(next),
            }
        }
        Ok(())
    }

    fn check_verdef(
        &self,
        image: &Image<'_>,
        string: &dyn Fn(&str, u64) -> Result<String, ElfError>,
    ) -> Result<(), ElfError> {
        let Some(mut at) = self.get(DT_VERDEF) else {
            return Ok(());
        };
        let num = self.get(DT_VERDEFNUM).unwrap_or(0).min(MAX_TABLE_ENTRIES);
        for i in 0..num {
            let e = image.bytes("DT_VERDEF", at, 20)?;
            let mut aux = at + u64::from(u32_at(e, 12));
            for _ in 0..u16_at(e, 6) {
                let a = image.bytes("DT_VERDEF aux", aux, 8)?;
                string(&format!("version definition {i}"), u64::from(u32_at(a, 0)))?;
                match u32_at(a, 4) {
                    0 => break,
                    next => aux += u64::from(next),
                }
            }
            match u32_at(e, 16) {
                0 => break,
                next => at += u64::from(next),
            }
        }
        Ok(())
    }
}

/// Tags whose duplicates would make the checks ambiguous (the loader takes one of them).
fn is_checked_tag(tag: u32) -> bool {
    matches!(
        tag,
        DT_STRTAB
            | DT_STRSZ
            | DT_SYMTAB
            | DT_HASH
            | DT_GNU_HASH
            | DT_RELA
            | DT_RELASZ
            | DT_REL
            | DT_RELSZ
            | DT_JMPREL
            | DT_PLTRELSZ
            | DT_RELR
            | DT_RELRSZ
            | DT_INIT_ARRAY
            | DT_INIT_ARRAYSZ
            | DT_FINI_ARRAY
            | DT_FINI_ARRAYSZ
            | DT_PREINIT_ARRAY
            | DT_PREINIT_ARRAYSZ
            | DT_VERSYM
            | DT_VERNEED
            | DT_VERDEF
            | DT_RPATH
            | DT_RUNPATH
            | DT_SONAME
    )
}

fn check_relocations(
    image: &Image<'_>,
    what: &str,
    addr: u64,
    size: u64,
    entry: u64,
    nsyms: u64,
) -> Result<(), ElfError> {
    if size % entry != 0 || size / entry > MAX_TABLE_ENTRIES {
        return Err(malformed(format!(
            "{what}: size {size} is not a plausible table of {entry}-byte entries"
        )));
    }
    let table = image.bytes(what, addr, size)?;
    for (i, r) in table.chunks_exact(entry as usize).enumerate() {
        let (offset, info) = (u64_at(r, 0), u64_at(r, 8));
        let sym = info >> 32;
        if sym >= nsyms.max(1) {
            return Err(malformed(format!(
                "{what} entry {i}: symbol index {sym} outside the {nsyms}-entry symbol table"
            )));
        }
        image.mapped(&format!("{what} entry {i} target"), offset, 8)?;
    }
    Ok(())
}

fn check_relr(image: &Image<'_>, addr: u64, size: u64) -> Result<(), ElfError> {
    if size % 8 != 0 || size / 8 > MAX_TABLE_ENTRIES {
        return Err(malformed(format!(
            "DT_RELR: size {size} is not a multiple of 8"
        )));
    }
    let table = image.bytes("DT_RELR", addr, size)?;
    let mut base = None;
    for (i, w) in table.chunks_exact(8).enumerate() {
        let word = u64_at(w, 0);
        if word & 1 == 0 {
            image.mapped(&format!("DT_RELR entry {i}"), word, 8)?;
            base = Some(word.wrapping_add(8));
        } else {
            let b = base.ok_or_else(|| malformed("DT_RELR: a bitmap before any address"))?;
            for bit in 1..64u64 {
                if word >> bit & 1 == 1 {
                    image.mapped(&format!("DT_RELR entry {i}"), b + (bit - 1) * 8, 8)?;
                }
            }
            base = Some(b + 63 * 8);
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
    fn a_real_shared_library_passes_and_reports_its_dependencies() {
        if let Some(lib) = own_library() {
            let info = validate(&lib).unwrap();
            assert!(
                info.needed.iter().any(|n| n.starts_with("ld-linux")),
                "{info:?}"
            );
            assert_eq!(info.soname.as_deref(), Some("libc.so.6"));
            check_dependencies(&info, DEFAULT_ALLOWED_LIBRARIES).unwrap();
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

    #[test]
    fn the_dependency_policy_refuses_paths_runpaths_and_unlisted_names() {
        let ok = DynamicInfo {
            needed: vec!["libc.so.6".into(), "libgcc_s.so.1".into()],
            ..Default::default()
        };
        check_dependencies(&ok, DEFAULT_ALLOWED_LIBRARIES).unwrap();
        let cases = [
            DynamicInfo {
                needed: vec!["libevil.so".into()],
                ..Default::default()
            },
            DynamicInfo {
                needed: vec!["/tmp/libc.so.6".into()],
                ..Default::default()
            },
            DynamicInfo {
                runpath: Some("$ORIGIN".into()),
                ..ok.clone()
            },
            DynamicInfo {
                rpath: Some("/tmp".into()),
                ..ok.clone()
            },
        ];
        for info in cases {
            assert!(
                matches!(
                    check_dependencies(&info, DEFAULT_ALLOWED_LIBRARIES),
                    Err(ElfError::DisallowedDependency(_))
                ),
                "{info:?}"
            );
        }
        // An explicit allowlist replaces the default.
        assert!(check_dependencies(&ok, &["libc.so.6"]).is_err());
    }

    /// Rewrites the value of the first dynamic entry with `tag` in a copy of `lib`.
    fn with_dynamic_value(lib: &[u8], tag: u32, value: u64) -> Option<Vec<u8>> {
        let header = FileHeader64::<Endianness>::parse(lib).ok()?;
        let e = header.endian().ok()?;
        let ph = header
            .program_headers(e, lib)
            .ok()?
            .iter()
            .find(|p| p.p_type(e) == PT_DYNAMIC)?;
        let (off, size) = (ph.p_offset(e) as usize, ph.p_filesz(e) as usize);
        let mut out = lib.to_vec();
        for at in (off..off + size).step_by(16) {
            if u64_at(lib, at) == u64::from(tag) {
                out[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
                return Some(out);
            }
        }
        None
    }

    #[test]
    fn dynamic_pointers_outside_the_segments_are_refused() {
        let Some(lib) = own_library() else { return };
        for (tag, value) in [
            (DT_STRTAB, 0xffff_ffff_0000),
            (DT_STRSZ, 0xffff_ffff),
            (DT_SYMTAB, 0x7fff_ffff_0000),
            (DT_GNU_HASH, 0x7fff_ffff_0000),
            (DT_RELA, 0x7fff_ffff_0000),
            (DT_VERNEED, 0x7fff_ffff_0000),
            (DT_NEEDED, 0x7fff_ffff),
        ] {
            let Some(bad) = with_dynamic_value(&lib, tag, value) else {
                continue;
            };
            assert!(
                matches!(validate(&bad), Err(ElfError::Malformed(_))),
                "tag {tag:#x} = {value:#x} passed"
            );
        }
    }
}
