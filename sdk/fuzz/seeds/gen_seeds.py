#!/usr/bin/env python3
"""Writes the generated (binary) seeds of the fuzz corpora: hand-made ELF64 shared objects for
the `elf` target and gzip units files for the `units` target. Every byte is made here; no
library is copied from the system. Deterministic: run it again and nothing changes.

    python3 sdk/fuzz/seeds/gen_seeds.py          # from the repository root

The ELF seeds are tiny x86-64 ET_DYN files (one PT_LOAD covering the file, a PT_DYNAMIC, a
.dynstr/.dynsym with one defined symbol, a SysV or GNU hash table, and optionally an .init_array
slot and one R_X86_64_RELATIVE relocation), each about 1 KiB, plus variants of what the loader
must refuse: RUNPATH, a DT_NEEDED outside the allowlist, a DT_STRTAB or DT_NEEDED offset out of
range, no hash table, a truncated file, another machine.
"""

import gzip
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "corpus")

EM_X86_64, EM_AARCH64 = 62, 183
ET_DYN = 3
PT_LOAD, PT_DYNAMIC = 1, 2
SHT_STRTAB, SHT_DYNAMIC, SHT_DYNSYM, SHT_INIT_ARRAY = 3, 6, 11, 14
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT = 0, 1, 5, 6, 10, 11
DT_INIT_ARRAY, DT_INIT_ARRAYSZ, DT_RUNPATH = 25, 27, 29
DT_HASH, DT_RELA, DT_RELASZ, DT_RELAENT, DT_GNU_HASH = 4, 7, 8, 9, 0x6FFFFEF5
SHT_HASH, SHT_RELA, SHT_GNU_HASH = 5, 4, 0x6FFFFFF6
R_X86_64_RELATIVE = 8


def align(n, a=8):
    return (n + a - 1) // a * a


def build_elf(
    needed=("libc.so.6",),
    runpath=None,
    init_array=False,
    machine=EM_X86_64,
    sections=True,
    strtab_delta=0,
    needed_delta=0,
    hash="sysv",
    rela=False,
):
    """One little-endian ELF64 shared object; vaddr == file offset (loaded at 0).

    `hash`: "sysv" (DT_HASH), "gnu" (DT_GNU_HASH) or None; `rela`: one R_X86_64_RELATIVE
    relocation of the init-array slot (or of the symbol's word)."""
    # .dynstr: "\0" then every name.
    dynstr = b"\0"
    offsets = {}
    for name in list(needed) + ([runpath] if runpath else []) + ["abkit_strategy"]:
        offsets[name] = len(dynstr)
        dynstr += name.encode() + b"\0"
    phnum = 2
    off = 64 + 56 * phnum
    dynstr_off = off
    off = align(off + len(dynstr))
    dynsym_off = off
    off += 48  # the null symbol and one defined object symbol, filled in below
    data_off = off  # the symbol's 8 bytes
    off += 8
    init_off = off if init_array else None
    if init_array:
        off += 8  # one null pointer: a constructor slot
    hash_off = off
    if hash == "sysv":
        hashtab = struct.pack("<IIII", 1, 2, 1, 0)  # nbucket 1, nchain 2, bucket[0] = 1, chain
        hashtab += struct.pack("<I", 0)
    elif hash == "gnu":
        # nbuckets 1, symoffset 1, bloom size 1, bloom shift 6, bloom word, bucket[0] = 1, chain[0] ends
        hashtab = struct.pack("<IIIIQII", 1, 1, 1, 6, 0xFFFFFFFFFFFFFFFF, 1, 1)
    else:
        hashtab = b""
    off = align(off + len(hashtab))
    rela_off = off
    relatab = b""
    if rela:
        target = init_off if init_array else data_off
        relatab = struct.pack("<QQq", target, R_X86_64_RELATIVE, 0)
    off += len(relatab)
    # st_name, st_info (STB_GLOBAL << 4 | STT_OBJECT), st_other, st_shndx (.dynsym's neighbour: 2), value, size
    dynsym = bytes(24) + struct.pack("<IBBHQQ", offsets["abkit_strategy"], 0x11, 0, 2, data_off, 8)
    dyn = [(DT_NEEDED, offsets[n] + needed_delta) for n in needed]
    if runpath:
        dyn.append((DT_RUNPATH, offsets[runpath]))
    dyn += [
        (DT_STRTAB, dynstr_off + strtab_delta),
        (DT_STRSZ, len(dynstr)),
        (DT_SYMTAB, dynsym_off),
        (DT_SYMENT, 24),
    ]
    if init_array:
        dyn += [(DT_INIT_ARRAY, init_off), (DT_INIT_ARRAYSZ, 8)]
    if hash == "sysv":
        dyn.append((DT_HASH, hash_off))
    elif hash == "gnu":
        dyn.append((DT_GNU_HASH, hash_off))
    if rela:
        dyn += [(DT_RELA, rela_off), (DT_RELASZ, len(relatab)), (DT_RELAENT, 24)]
    dyn.append((DT_NULL, 0))
    dynamic = b"".join(struct.pack("<qQ", t, v) for t, v in dyn)
    dynamic_off = align(off)
    off = dynamic_off + len(dynamic)
    shstrtab = b"\0.dynstr\0.dynsym\0.init_array\0.dynamic\0.shstrtab\0.hash\0.gnu.hash\0.rela.dyn\0"
    shstr_off = off
    off += len(shstrtab)
    load_end = off

    shdrs = []
    if sections:
        name = lambda s: shstrtab.index(s.encode() + b"\0")  # noqa: E731
        # (name, type, flags, addr, offset, size, link, info, addralign, entsize)
        shdrs.append((0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        shdrs.append((name(".dynstr"), SHT_STRTAB, 2, dynstr_off, dynstr_off, len(dynstr), 0, 0, 1, 0))
        shdrs.append((name(".dynsym"), SHT_DYNSYM, 2, dynsym_off, dynsym_off, 48, 1, 1, 8, 24))
        if init_array:
            shdrs.append((name(".init_array"), SHT_INIT_ARRAY, 3, init_off, init_off, 8, 0, 0, 8, 8))
        if hash:
            kind, sect = (SHT_HASH, ".hash") if hash == "sysv" else (SHT_GNU_HASH, ".gnu.hash")
            shdrs.append((name(sect), kind, 2, hash_off, hash_off, len(hashtab), 2, 0, 8, 4 if hash == "sysv" else 0))
        if rela:
            shdrs.append((name(".rela.dyn"), SHT_RELA, 2, rela_off, rela_off, len(relatab), 2, 0, 8, 24))
        shdrs.append((name(".dynamic"), SHT_DYNAMIC, 3, dynamic_off, dynamic_off, len(dynamic), 1, 0, 8, 16))
        shdrs.append((name(".shstrtab"), SHT_STRTAB, 0, 0, shstr_off, len(shstrtab), 0, 0, 1, 0))
    shoff = align(off) if sections else 0
    shnum = len(shdrs)

    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # ELFCLASS64, LSB, EV_CURRENT, SysV
    ehdr = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        ET_DYN, machine, 1, 0, 64, shoff, 0, 64, 56, phnum, 64, shnum, shnum - 1 if sections else 0,
    )
    # p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
    phdrs = struct.pack("<IIQQQQQQ", PT_LOAD, 6, 0, 0, 0, load_end, load_end, 0x1000)
    phdrs += struct.pack(
        "<IIQQQQQQ", PT_DYNAMIC, 6, dynamic_off, dynamic_off, dynamic_off, len(dynamic), len(dynamic), 8
    )
    out = bytearray(ehdr + phdrs)
    blobs = [(dynstr_off, dynstr), (dynsym_off, dynsym), (data_off, bytes(8)), (hash_off, hashtab)]
    blobs += [(rela_off, relatab), (dynamic_off, dynamic), (shstr_off, shstrtab)]
    for at, blob in blobs:
        out += bytes(at - len(out))
        out += blob
    if sections:
        out += bytes(shoff - len(out))
        for sh in shdrs:
            out += struct.pack("<IIQQQQIIQQ", *sh)
    return bytes(out)


def write(target, name, data):
    assert len(data) < 4096, (name, len(data))
    path = os.path.join(CORPUS, target, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def main():
    minimal = build_elf()
    elf = {
        "minimal.so": minimal,
        "init-array.so": build_elf(init_array=True),
        "no-sections.so": build_elf(sections=False),
        "gnu-hash.so": build_elf(hash="gnu"),
        "no-hash.so": build_elf(hash=None),
        "rela-init-array.so": build_elf(init_array=True, rela=True),
        "rela-gnu-hash.so": build_elf(hash="gnu", rela=True),
        "libm-libdl.so": build_elf(needed=("libm.so.6", "libdl.so.2", "libc.so.6")),
        "runpath.so": build_elf(runpath="$ORIGIN"),
        "needed-own-lib.so": build_elf(needed=("libc.so.6", "libplugin-helper.so")),
        "bad-strtab.so": build_elf(strtab_delta=0x10000),
        "bad-needed-offset.so": build_elf(needed_delta=0x7FFF0000),
        "aarch64.so": build_elf(machine=EM_AARCH64),
        "truncated.so": minimal[: len(minimal) // 2],
        "header-only.so": minimal[:64],
    }
    for name, data in elf.items():
        write("elf", name, data)
    # units: the first byte is the mode (bit 0 CSV, bit 1 skip bad lines, bits 2-3 chunk size).
    write("units", "plain-gzip.txt", b"\x0c" + gzip.compress(b"user-1\nuser-2\nqa-1\n", mtime=0))
    write("units", "csv-gzip.txt", b"\x0d" + gzip.compress(b"id,country\nuser-1,US\nuser-2,CA\n", mtime=0))


if __name__ == "__main__":
    main()
