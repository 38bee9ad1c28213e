#!/usr/bin/env python3
"""Helpers of tests/bench/hot_symbols.sh (python3 stdlib only).

  hot_symbols.py bundle CONFIG ROOTFS true|sleep   edit a `hull spec` config
  hot_symbols.py process CONFIG OUT                its process, for exec --process
  hot_symbols.py drop FILE                         drop FILE's page cache
  hot_symbols.py pages FILE                        FILE's cached pages (mincore)
  hot_symbols.py order BINARY OUT [--first NAME] [--map MAP --rodata-out LD] PAGEFILE...
      the functions of BINARY's .text on the pages listed, one symbol a
      line: those of the PAGEFILEs named --first (in address order), then
      the rest grouped by which PAGEFILEs touch them (see PRIORITY). The list's
      header records what it was made for (see fingerprint()). With the
      link map, the same for the constants of .rodata, as a linker script.
  hot_symbols.py check LIST                        whether LIST was made for
      this tree's Cargo.lock and rustc (exit 1 if not)
"""
import argparse
import collections
import ctypes
import json
import os
import re
import subprocess
import sys

PAGE = 4096


def cmd_bundle(a):
    with open(a.config) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = ["/bin/true"] if a.kind == "true" else ["/bin/sleep", "600"]
    cfg["process"]["terminal"] = False
    cfg["root"] = {"path": a.rootfs, "readonly": True}
    with open(a.config, "w") as f:
        json.dump(cfg, f)


def cmd_process(a):
    with open(a.config) as f:
        proc = json.load(f)["process"]
    with open(a.out, "w") as f:
        json.dump(proc, f)


def cmd_drop(a):
    fd = os.open(a.file, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cmd_pages(a):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    fd = os.open(a.file, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        addr = libc.mmap(None, size, 1, 2, fd, 0)  # PROT_READ, MAP_PRIVATE
        if addr in (None, ctypes.c_void_p(-1).value):
            sys.exit("mmap %s failed" % a.file)
        n = (size + PAGE - 1) // PAGE
        vec = (ctypes.c_ubyte * n)()
        if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
            sys.exit("mincore failed: %s" % os.strerror(ctypes.get_errno()))
        libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
    finally:
        os.close(fd)
    print(" ".join(str(i) for i in range(n) if vec[i] & 1))


def fingerprint(repo):
    """What the names in the list depend on besides hull's own code: the
    symbol hashes of hull's types (and of every generic instantiated with
    them) change with hull's crate metadata, which changes with its
    dependency graph (Cargo.lock), and std's with the compiler. FNV-1a 64
    of Cargo.lock's bytes and `rustc -V`'s line; build.rs computes the same
    and warns when the list was made for another one."""
    h = 0xCBF29CE484222325
    rustc = os.environ.get("RUSTC", "rustc")
    version = subprocess.run([rustc, "-V"], capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(repo, "Cargo.lock"), "rb") as f:
        data = f.read() + version.encode()
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


MADE_FOR = "# made for: "


def repo_of(list_path):
    return os.path.dirname(os.path.dirname(os.path.abspath(list_path)))


def cmd_check(a):
    want = fingerprint(repo_of(a.list))
    have = ""
    with open(a.list) as f:
        for line in f:
            if not line.startswith("#"):
                break
            if line.startswith(MADE_FOR):
                have = line[len(MADE_FOR):].strip()
    if have == want:
        print("hot-symbols: %s was made for this Cargo.lock and rustc" % a.list)
        return 0
    print("hot-symbols: %s was made for another Cargo.lock or rustc (%s, this tree %s): "
          "most of its names miss this build, run make hot-symbols" % (a.list, have or "not recorded", want))
    return 1


# The order in which commands get their code together (see cmd_order): the
# runtime commands a container's life pays, then the rest.
PRIORITY = ["run", "create", "start", "exec", "delete", "state", "kill", "monitor-setup", "holder-setup", "lean-error"]


def priority(cmd):
    return (PRIORITY.index(cmd), cmd) if cmd in PRIORITY else (len(PRIORITY), cmd)


def touched(lo, length, pages):
    """Whether a function at file offset lo of that length ran, from the
    pages a command touched. One of two pages or more counts only if a page
    wholly its own was touched: a touched page at its edge may be its
    neighbour's code, and such large functions (an unrelated 56 KiB
    subcommand next to a hot one) were a sixth of the list's bytes otherwise."""
    hi = lo + max(length, 1)
    hit = [p for p in range(lo // PAGE, (hi - 1) // PAGE + 1) if p in pages]
    if length < 2 * PAGE:
        return bool(hit)
    return any(p * PAGE >= lo and (p + 1) * PAGE <= hi for p in hit)


def section(binary, name):
    """(address, file offset, size) of BINARY's section NAME."""
    out = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if m and m.group(1) == name:
            return int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16)
    sys.exit("%s has no %s" % (binary, name))


# Input sections of .rodata the list may name: the ones rustc gives every
# constant and jump table of its own (-Z function-sections, so data
# sections too), unique by name. Merged constants and strings (.rodata.cst*,
# .rodata.str*) and C archives' plain .rodata cannot be moved one by one.
MOVABLE_RODATA = re.compile(r"^\.rodata\.(\.Lanon\.|\.Lswitch\.table\.|_ZN|_R)[A-Za-z0-9_.$]+$")


# Where they are: in .rodata, or already gathered by the last script.
RODATA_OUT = (".rodata", ".rodata.hot")


def rodata_sections(link_map):
    """(output section, address, size, name) of the movable input sections
    of .rodata (or .rodata.hot) in an
    lld link map (-Map): lines "VMA LMA Size Align Out In", an input
    section's In being "file:(name)"."""
    out, secs = None, []
    with open(link_map) as f:
        for line in f:
            m = re.match(r"\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+ (.*)$", line)
            if not m:
                continue
            if not m.group(3).startswith(" "):
                out = m.group(3).strip()
                continue
            s = re.match(r".*:\((.*)\)$", m.group(3).strip())
            if out in RODATA_OUT and s and MOVABLE_RODATA.match(s.group(1)):
                secs.append((out, int(m.group(1), 16), int(m.group(2), 16), s.group(1)))
    return secs


def grouped(units, pagefiles, first_cmds):
    """The names of UNITS ((file offset, size, name)) that the PAGEFILEs
    show touched: those of the
    FIRST_CMDS first, in address order, then grouped by which commands
    touch them, the first command's first, within them the second's, and
    so on: each command's code or data is then a few long runs (the first
    ones' one run) instead of being spread over the whole list, and
    fault-around maps fewer 64 KiB blocks of it. Measured against the
    order by how many commands use a function (80700f8's list), release
    build: the text a `create` keeps resident 1.99 -> 1.70 MiB, its peak
    RSS ~4.9 -> ~4.7 MiB."""
    users = collections.defaultdict(set)
    first = set()
    for path in pagefiles:
        with open(path) as f:
            pages = set(int(x) for x in f.read().split())
        cmd = os.path.basename(path)
        for addr, length, name in units:
            if touched(addr, length, pages):
                users[name].add(cmd)
                if cmd in first_cmds:
                    first.add(name)
    where = {name: addr for addr, _, name in units}
    # Aliases share an address; their name breaks the tie, so that the
    # list does not follow the set's (randomised) iteration order.
    order = sorted(first, key=lambda n: (where[n], n))
    cmds = sorted({os.path.basename(p) for p in pagefiles}, key=priority)

    def group(n):
        return tuple(c not in users[n] for c in cmds)
    order += sorted((n for n in users if n not in first), key=lambda n: (group(n), where[n], n))
    size = sum(length for _, length, name in units if name in users)
    return order, size, len(first)


def write_rodata_script(link_map, binary, out, pagefiles, first_cmds):
    """A linker script of the touched constants, in their own output
    section before .rodata (INSERT keeps the default layout)."""
    where = {}
    units = []
    for out_name, addr, length, name in rodata_sections(link_map):
        if out_name not in where:
            where[out_name] = section(binary, out_name)
        vaddr, offset, _ = where[out_name]
        units.append((addr - vaddr + offset, length, name))
    units.sort()
    order, size, _ = grouped(units, pagefiles, first_cmds)
    with open(out + ".tmp", "w") as f:
        f.write("/* Generated by tests/bench/hot_symbols.sh: the constants hull's hot\n"
                "   processes read, placed together before .rodata (see build.rs).\n"
                "   %s%s */\n" % (MADE_FOR, fingerprint(repo_of(out))))
        f.write("SECTIONS\n{\n  .rodata.hot : {\n")
        for n in order:
            f.write("    *(%s)\n" % n)
        f.write("  }\n}\nINSERT BEFORE .rodata;\n")
    os.rename(out + ".tmp", out)
    print("hot-symbols: %d constants (%d KiB) in %s" % (len(order), size // 1024, out))


def cmd_order(a):
    vaddr, offset, size = section(a.binary, ".text")
    out = subprocess.run(["nm", "-S", "--defined-only", a.binary], capture_output=True, text=True, check=True).stdout
    funcs = []
    for line in out.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW":
            addr, length = int(p[0], 16), int(p[1], 16)
            if vaddr <= addr < vaddr + size:
                funcs.append((addr - vaddr + offset, length, p[3]))
    if not funcs:
        sys.exit("%s has no function symbols (stripped?)" % a.binary)
    funcs.sort()
    order, total, nfirst = grouped(funcs, a.pagefiles, a.first)
    with open(a.out + ".tmp", "w") as f:
        f.write("# Generated by tests/bench/hot_symbols.sh: the functions hull's hot\n"
                "# processes run, placed first in .text by the linker (see build.rs).\n"
                "%s%s\n" % (MADE_FOR, fingerprint(repo_of(a.out))))
        for n in order:
            f.write(n + "\n")
    os.rename(a.out + ".tmp", a.out)
    print("hot-symbols: %d functions (%d KiB) in %s, %d of them first"
          % (len(order), total // 1024, a.out, nfirst))
    if a.map:
        write_rodata_script(a.map, a.binary, a.rodata_out, a.pagefiles, a.first)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = p.add_subparsers(dest="cmd", required=True)
    b = sp.add_parser("bundle")
    b.add_argument("config")
    b.add_argument("rootfs")
    b.add_argument("kind", choices=["true", "sleep"])
    pr = sp.add_parser("process")
    pr.add_argument("config")
    pr.add_argument("out")
    d = sp.add_parser("drop")
    d.add_argument("file")
    pg = sp.add_parser("pages")
    pg.add_argument("file")
    o = sp.add_parser("order")
    o.add_argument("binary")
    o.add_argument("out")
    o.add_argument("--first", action="append", default=[])
    o.add_argument("--map", help="BINARY's lld link map: also order its constants")
    o.add_argument("--rodata-out", help="the linker script of the constants (with --map)")
    o.add_argument("pagefiles", nargs="+")
    c = sp.add_parser("check")
    c.add_argument("list")
    a = p.parse_args()
    if a.cmd == "order" and bool(a.map) != bool(a.rodata_out):
        p.error("order: --map and --rodata-out go together")
    return {"bundle": cmd_bundle, "process": cmd_process, "drop": cmd_drop,
            "pages": cmd_pages, "order": cmd_order, "check": cmd_check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
