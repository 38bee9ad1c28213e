#!/usr/bin/env python3
"""Where one container's create/start/delete spends its time, and what each
runtime command costs (python3 stdlib only; driven by tests/bench/profile.sh).

  profile.py measure --runtime NAME --binary PATH --bundle DIR --state DIR
                     --work DIR --out FILE.json [--iters N] [--state-file NAME]
      For one runtime:
      - phases: one create + start + delete under `strace -f -ttt -T -y`,
        cut into consecutive phases at the first syscall that marks each
        (see PHASES); times are of the traced run (strace slows every
        syscall, so read them as shares), and the time spent inside the
        syscalls no runtime can avoid (clone, unshare/setns, mount, umount,
        pivot_root, cgroup mkdir/rmdir/procs writes, the program's execve)
        is the kernel floor;
      - syscalls: how many syscalls each command makes (from the same trace);
      - wall: untraced median wall time of each command over N iterations
        (noisy on a loaded machine; a check, not a target);
      - rss: peak RSS (ru_maxrss from wait4) of each command: run, create,
        start, exec, state, kill, delete;
      - callgrind: instructions executed in user space by `start`, `state`
        and `delete` (valgrind --tool=callgrind; see measure_callgrind for
        why not create/run).

  profile.py report FILE.json... [--json-out FILE]
      Print the tables side by side.
"""

import argparse
import ctypes
import glob
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
TIMEOUT = 60

# A phase starts at the first syscall (at or after the previous phase's
# start) that matches its marker; a phase whose marker never shows is
# empty. (name, marker(event) -> bool)
PHASES_CREATE = [
    ("process start-up", lambda e: True),
    ("exe guard (+ re-exec start-up)", lambda e: "/proc/self/exe" in e.args or e.name in ("open_tree", "memfd_create")),
    ("config parse + validate", lambda e: "config.json" in e.args and e.name in ("openat", "open")),
    ("cgroup setup", lambda e: "/sys/fs/cgroup" in e.args),
    ("clone + namespaces", lambda e: e.name in ("clone", "clone3", "fork", "vfork")),
    ("rootfs mounts", lambda e: e.name in ("mount", "move_mount", "fsmount", "mount_setattr") and e.pid != e.root_pid),
    ("pivot + finish (to ready)", lambda e: e.name in ("pivot_root", "chroot")),
    ("state writes", None),  # set per runtime: the record's file name
]
PHASES_START = [
    ("process start-up", lambda e: True),
    ("state load", lambda e: e.name in ("openat", "open") and "/proc" not in e.args and e.state_file in e.args),
    ("exec fifo wait", lambda e: e.name in ("openat", "open") and "exec" in e.args and "fifo" in e.args),
    ("after exec (hooks, state)", lambda e: e.name in ("unlink", "unlinkat") and "fifo" in e.args),
]
PHASES_DELETE = [
    ("process start-up", lambda e: True),
    ("state load", lambda e: e.name in ("openat", "open") and "/proc" not in e.args and e.state_file in e.args),
    ("cgroup removal", lambda e: e.name in ("rmdir", "unlinkat") and "/sys/fs/cgroup" in e.args),
    ("state removal", lambda e: e.name in ("unlinkat", "unlink", "rmdir", "renameat", "renameat2", "rename")
     and "/sys/fs/cgroup" not in e.args and "fifo" not in e.args),
]


def floor_kind(e):
    """The unavoidable-kernel-work class of a syscall, or None."""
    n, a = e.name, e.args
    if n in ("clone", "clone3", "fork", "vfork"):
        return "clone"
    if n in ("unshare", "setns"):
        return "namespaces"
    if n in ("mount", "umount2", "pivot_root", "move_mount", "fsmount", "open_tree", "mount_setattr") and "/proc/self/exe" not in a:
        return "mounts"
    if "/sys/fs/cgroup" in a and (n in ("mkdir", "mkdirat", "rmdir") or (n == "write" and "cgroup.procs" in a)):
        return "cgroup"
    if n == "execve" and e.pid != e.root_pid and not e.args.startswith('"/proc/self/') and e.ret == "0":
        return "program execve"
    return None


class Event:
    __slots__ = ("pid", "start", "end", "name", "args", "ret", "root_pid", "state_file")


LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
CALL = re.compile(r"^([a-z0-9_]+)\((.*)$")
RESUMED = re.compile(r"^<\.\.\. ([a-z0-9_]+) resumed>(.*)$")
RET = re.compile(r"\)\s+=\s+(\S+).*?(?:<(\d+\.\d+)>)?$")


def parse_strace(path, state_file):
    events, pending = [], {}
    root_pid = None
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                continue
            pid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
            if root_pid is None:
                root_pid = pid
            if rest.startswith("+++") or rest.startswith("---"):
                continue
            r = RESUMED.match(rest)
            if r:
                ev = pending.pop((pid, r.group(1)), None)
                if ev is None:
                    continue
                tail = r.group(2)
            else:
                c = CALL.match(rest)
                if not c:
                    continue
                ev = Event()
                ev.pid, ev.start, ev.name, ev.args = pid, ts, c.group(1), c.group(2)
                ev.root_pid, ev.state_file = root_pid, state_file
                if rest.endswith("<unfinished ...>"):
                    pending[(pid, ev.name)] = ev
                    ev.end, ev.ret = ts, "?"
                    events.append(ev)
                    continue
                tail = ""
                events.append(ev)
            full = ev.args + tail if r else ev.args
            ev.args = full
            rm = RET.search(full)
            ev.ret = rm.group(1) if rm else "?"
            dur = float(rm.group(2)) if rm and rm.group(2) else 0.0
            ev.end = ev.start + dur if not r else ts + dur
    events.sort(key=lambda e: e.start)
    return events


def phases(events, spec):
    """Consecutive phases: [(name, ms or None)], total ms."""
    if not events:
        return [], 0.0
    t_end = max(e.end for e in events)
    marks, i = [], 0
    for name, pred in spec:
        at = None
        for j in range(i, len(events)):
            if pred(events[j]):
                at, i = j, j
                break
        marks.append((name, events[at].start if at is not None else None))
    out, known = [], [(n, t) for n, t in marks if t is not None]
    for n, t in marks:
        if t is None:
            out.append((n, None))
            continue
        later = [u for (_, u) in known if u > t]
        out.append((n, ((min(later) if later else t_end) - t) * 1000.0))
    return out, (t_end - events[0].start) * 1000.0


def floor(events):
    by = {}
    for e in events:
        k = floor_kind(e)
        if k:
            by[k] = by.get(k, 0.0) + (e.end - e.start) * 1000.0
    return by


# --------------------------------------------------------------------------


def set_child_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Runtime:
    def __init__(self, a):
        self.a = a
        self.log = os.path.join(a.work, "%s.log" % a.runtime)

    def argv(self, *args):
        return [self.a.binary, "--root", self.a.state] + list(args)

    def spawn(self, argv):
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        return os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)

    def wait(self, pid, what):
        deadline = time.monotonic() + TIMEOUT
        while True:
            wpid, status, ru = os.wait4(pid, os.WNOHANG)
            if wpid == pid:
                code = os.waitstatus_to_exitcode(status)
                if code != 0:
                    raise RuntimeError("%s: %s exited %d (see %s)" % (self.a.runtime, what, code, self.log))
                return ru
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise RuntimeError("%s: %s timed out" % (self.a.runtime, what))
            time.sleep(0.0005)

    def call(self, *args, prefix=()):
        """Run one command; returns (wall ms, peak RSS KiB). The RSS is
        taken by /usr/bin/time: ru_maxrss of a process started straight
        from this (large) python would be python's own (posix_spawn's
        vfork and exec keep the old mm's high-water mark)."""
        rss_file = os.path.join(self.a.work, "rss")
        argv = list(prefix) + self.argv(*args)
        if not prefix:
            argv = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + argv
        argv[0] = shutil.which(argv[0]) or argv[0]
        t0 = time.perf_counter()
        self.wait(self.spawn(argv), " ".join(args[:1]))
        ms = (time.perf_counter() - t0) * 1000.0
        kib = 0
        if not prefix:
            with open(rss_file) as f:
                kib = int(f.read().split()[-1])
        return ms, kib

    def quiet(self, *args):
        try:
            self.call(*args)
        except RuntimeError:
            pass


def bundle_with(a, name, args):
    """A copy of the bundle's config with other process args."""
    d = os.path.join(a.work, "bundle-%s-%s" % (a.runtime, name))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(a.bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = args
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    return d


LIFECYCLE_SH = r"""
b=$1 root=$2 bundle=$3 id=$4
"$b" --root "$root" create --bundle "$bundle" "$id" || exit 1
"$b" --root "$root" start "$id" || exit 1
n=0
while [ $n -lt 20000 ] && "$b" --root "$root" state "$id" 2>/dev/null | grep -q '"status": *"\(created\|running\)"'; do
    n=$((n + 1))
done
"$b" --root "$root" delete "$id"
"""


def subtree(events, root):
    parent = {}
    for e in events:
        if e.name in ("clone", "clone3", "fork", "vfork") and e.ret.isdigit():
            parent[int(e.ret)] = e.pid
    def under(pid):
        seen = 0
        while pid is not None and seen < 64:
            if pid == root:
                return True
            pid, seen = parent.get(pid), seen + 1
        return False
    return {e.pid for e in events if under(e.pid)}


def measure_phases(r, a):
    """One create, start and delete (with `state` polls between), all under
    one strace -f, so that the container init is traced too; each command's
    events are those of its process tree while it runs (start's include the
    init's, whose exec it waits for)."""
    out = {}
    cid = "prof-%s-%d" % (a.runtime, os.getpid())
    trace = os.path.join(a.work, "%s.strace" % a.runtime)
    try:
        argv = [shutil.which("strace"), "-f", "-ttt", "-T", "-y", "-s", "256", "-qq", "-o", trace,
                "/bin/sh", "-c", LIFECYCLE_SH, "sh", a.binary, a.state, a.bundle, cid]
        r.wait(r.spawn(argv), "traced lifecycle")
    finally:
        r.quiet("delete", "--force", cid)
        reap()
    events = parse_strace(trace, a.state_file)
    roots = {}
    for e in events:
        if e.name == "execve" and e.ret == "0" and e.pid != e.root_pid:
            for k in ("create", "start", "delete"):
                if k not in roots and '"--root", "%s", "%s"' % (a.state, k) in e.args:
                    roots[k] = e.pid
    if set(roots) != {"create", "start", "delete"}:
        raise RuntimeError("could not find the create/start/delete processes in the trace (%s)" % sorted(roots))
    trees = {k: subtree(events, pid) for k, pid in roots.items()}
    window = {}
    for k, pid in roots.items():
        own = [e for e in events if e.pid == pid]
        window[k] = (min(e.start for e in own), max(e.end for e in own))
    spec_create = list(PHASES_CREATE)
    spec_create[-1] = ("state writes", lambda e: a.state_file in e.args and e.name in ("openat", "open", "creat")
                       and ("O_WRONLY" in e.args or "O_RDWR" in e.args) and e.pid == e.root_pid)
    for k, spec in (("create", spec_create), ("start", PHASES_START), ("delete", PHASES_DELETE)):
        lo, hi = window[k]
        pids = trees[k] | (trees["create"] if k == "start" else set())
        ev = [e for e in events if e.pid in pids and lo <= e.start <= hi]
        for e in ev:
            e.root_pid = roots[k]
        ph, total = phases(ev, spec)
        out[k] = {"phases_ms": ph, "traced_total_ms": total, "syscalls": len(ev), "floor_ms": floor(ev),
                  "processes": len({e.pid for e in ev})}
    return out


def wait_stopped(r, cid):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        reap()
        p = subprocess.run(r.argv("state", cid), capture_output=True, text=True, timeout=TIMEOUT)
        if p.returncode != 0 or '"stopped"' in p.stdout:
            return
        time.sleep(0.002)
    raise RuntimeError("%s: container %s did not stop" % (r.a.runtime, cid))


def measure_wall_rss(r, a):
    wall = {k: [] for k in ("run", "create", "start", "delete")}
    rss = {}
    sleep_bundle = bundle_with(a, "sleep", ["sleep", "60"])

    def note(k, v):
        ms, kib = v
        wall.setdefault(k, []).append(ms)
        rss[k] = max(rss.get(k, 0), kib)

    for i in range(a.iters + 2):
        cid = "prof-%s-%d-%d" % (a.runtime, os.getpid(), i)
        try:
            v = r.call("run", "--bundle", a.bundle, cid + "r")
            r.call("delete", "--force", cid + "r") if os.path.isdir(os.path.join(a.state, cid + "r")) else None
            if i >= 2:
                note("run", v)
            v1 = r.call("create", "--bundle", a.bundle, cid)
            v2 = r.call("start", cid)
            wait_stopped(r, cid)
            v3 = r.call("delete", cid)
            if i >= 2:
                note("create", v1)
                note("start", v2)
                note("delete", v3)
        finally:
            r.quiet("delete", "--force", cid)
            r.quiet("delete", "--force", cid + "r")
            reap()
    # exec, state and kill on a running container (peak RSS only).
    cid = "prof-%s-%d-x" % (a.runtime, os.getpid())
    try:
        r.call("create", "--bundle", sleep_bundle, cid)
        r.call("start", cid)
        for k, args in (("exec", ("exec", cid, "/bin/true")), ("state", ("state", cid)), ("kill", ("kill", cid, "KILL"))):
            note(k, r.call(*args))
        wait_stopped(r, cid)
        r.call("delete", cid)
    finally:
        r.quiet("delete", "--force", cid)
        reap()
    return {"wall_ms": {k: statistics.median(v) for k, v in wall.items() if v}, "rss_kib": rss}


def callgrind_total(path):
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("%s: no instruction total" % path)


RO_BIND_SH = r"""
d=$1; shift
mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" && exec "$@"
"""


def measure_callgrind(r, a):
    """User-space instructions of `start`, `state` and `delete` (callgrind,
    one process each; the container is created outside valgrind). create,
    run and exec cannot run under valgrind 3.19 (Debian 12): it does not
    know openat2(2), with which hull resolves paths inside the rootfs."""
    d = os.path.join(a.work, "callgrind-%s" % a.runtime)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    cid = "prof-%s-%d-cg" % (a.runtime, os.getpid())
    out = {}
    # crun re-executes itself from a sealed copy at every command, unless
    # its binary is on a read-only mount, and valgrind cannot follow that
    # exec through an fd: each runtime runs from a copy on a read-only bind
    # mount (in a private mount namespace).
    ro = os.path.join(d, "ro")
    os.makedirs(ro)
    exe = os.path.join(ro, os.path.basename(a.binary))
    shutil.copy2(a.binary, exe)

    def vg(k, *args):
        argv = [shutil.which("unshare"), "-m", "/bin/sh", "-c", RO_BIND_SH, "sh", ro,
                shutil.which("valgrind"), "--tool=callgrind", "--callgrind-out-file=%s/%s.out" % (d, k),
                exe, "--root", a.state] + list(args)
        r.wait(r.spawn(argv), "%s under callgrind" % k)
        out[k] = callgrind_total(os.path.join(d, "%s.out" % k))

    try:
        r.call("create", "--bundle", a.bundle, cid)
        vg("state", "state", cid)
        vg("start", "start", cid)
        wait_stopped(r, cid)
        vg("delete", "delete", cid)
    finally:
        r.quiet("delete", "--force", cid)
        reap()
    return out


def cmd_measure(a):
    set_child_subreaper()
    os.makedirs(a.work, exist_ok=True)
    os.makedirs(a.state, exist_ok=True)
    r = Runtime(a)
    res = {"runtime": a.runtime, "binary": a.binary, "iters": a.iters}
    p = subprocess.run([a.binary, "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    res["version"] = p.stdout.strip().splitlines()[0] if p.stdout.strip() else "?"
    for key, fn in (("phases", measure_phases), ("wall_rss", measure_wall_rss), ("callgrind", measure_callgrind)):
        try:
            res[key] = fn(r, a)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            res[key] = {"error": str(e)}
            print("profile: %s: %s: %s" % (a.runtime, key, e), file=sys.stderr)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


# --------------------------------------------------------------------------


def fmt(v, spec="%.2f"):
    return "-" if v is None else spec % v


def cmd_report(a):
    res = []
    for path in a.files:
        try:
            with open(path) as f:
                res.append(json.load(f))
        except (OSError, ValueError) as e:
            print("profile: %s: %s" % (path, e), file=sys.stderr)
    names = [r["runtime"] for r in res]
    w = 12
    col = lambda vals: "".join("%*s" % (w, v) for v in vals)
    print()
    print("Versions: " + "; ".join("%s %s" % (r["runtime"], r.get("version", "?")) for r in res))
    for cmd in ("create", "start", "delete"):
        print()
        print("%s, phases under strace -f (ms of the traced run; strace inflates syscalls, read as shares)" % cmd)
        print("%-34s%s" % ("phase", col(names)))
        rows = None
        for r in res:
            ph = ((r.get("phases") or {}).get(cmd) or {}).get("phases_ms") or []
            if rows is None:
                rows = [n for n, _ in ph]
        for i, n in enumerate(rows or []):
            vals = []
            for r in res:
                ph = ((r.get("phases") or {}).get(cmd) or {}).get("phases_ms") or []
                vals.append(fmt(ph[i][1]) if i < len(ph) else "-")
            print("%-34s%s" % (n, col(vals)))
        g = lambda r, k: ((r.get("phases") or {}).get(cmd) or {}).get(k)
        print("%-34s%s" % ("total (traced)", col([fmt(g(r, "traced_total_ms")) for r in res])))
        print("%-34s%s" % ("kernel floor (unavoidable syscalls)", col([fmt(sum((g(r, "floor_ms") or {}).values()) if g(r, "floor_ms") is not None else None) for r in res])))
        kinds = sorted({k for r in res for k in (g(r, "floor_ms") or {})})
        for k in kinds:
            print("%-34s%s" % ("  " + k, col([fmt((g(r, "floor_ms") or {}).get(k)) for r in res])))
        print("%-34s%s" % ("syscalls", col([str(g(r, "syscalls") or "-") for r in res])))
        print("%-34s%s" % ("processes", col([str(g(r, "processes") or "-") for r in res])))
    print()
    print("Untraced wall time, median ms (noisy on a loaded machine)")
    print("%-34s%s" % ("command", col(names)))
    for k in ("run", "create", "start", "delete"):
        vals = [fmt(((r.get("wall_rss") or {}).get("wall_ms") or {}).get(k)) for r in res]
        print("%-34s%s" % (k, col(vals)))
    print()
    print("Peak RSS of each command (ru_maxrss, MiB)")
    print("%-34s%s" % ("command", col(names)))
    for k in ("run", "create", "start", "exec", "state", "kill", "delete"):
        vals = []
        for r in res:
            v = ((r.get("wall_rss") or {}).get("rss_kib") or {}).get(k)
            vals.append(fmt(v / 1024.0 if v else None))
        print("%-34s%s" % (k, col(vals)))
    print()
    print("User-space instructions per command (callgrind, millions)")
    print("%-34s%s" % ("command", col(names)))
    for k in ("state", "start", "delete"):
        vals = [((r.get("callgrind") or {}).get(k)) for r in res]
        line = "%-34s%s" % (k, col([fmt(v / 1e6 if v else None) for v in vals]))
        if "hull" in names:
            h = vals[names.index("hull")]
            line += "   " + "  ".join("hull/%s %.2f" % (n, h / v) for n, v in zip(names, vals) if n != "hull" and h and v)
        print(line)
    for r in res:
        for k in ("phases", "wall_rss", "callgrind"):
            if isinstance(r.get(k), dict) and r[k].get("error"):
                print("%s %s: FAILED: %s" % (r["runtime"], k, r[k]["error"]))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    for k in ("runtime", "binary", "bundle", "state", "work", "out"):
        m.add_argument("--" + k, required=True)
    m.add_argument("--iters", type=int, default=20)
    m.add_argument("--state-file", default="state.json")
    rp = sub.add_parser("report")
    rp.add_argument("files", nargs="+")
    rp.add_argument("--json-out")
    a = p.parse_args()
    if a.cmd == "measure":
        cmd_measure(a)
    else:
        cmd_report(a)


if __name__ == "__main__":
    main()
