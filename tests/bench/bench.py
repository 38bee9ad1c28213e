#!/usr/bin/env python3
"""Container start-up benchmark: hull vs runc vs crun (python3 stdlib only).

Normally driven by tests/bench/bench.sh. Subcommands:

  bench.py prepare --rootfs DIR --bundle DIR [--spec-from BIN]
      Write BUNDLE/config.json (from `runc spec`): args ["/bin/true"],
      terminal false, root.path = absolute rootfs, root.readonly true; and
      BUNDLE-limits/config.json, the same with cgroup limits (LIMITS).

  bench.py run --runtime NAME --binary PATH --bundle DIR --state DIR
               --out FILE.json [--iters N] [--warmup N] [--timeout S]
               [--budget S]
      Benchmark one runtime and write JSON results. Two workloads:
        (a) run:       RT --root STATE run --bundle B ID ; RT --root STATE delete ID
        (b) lifecycle: RT --root STATE create --bundle B --pid-file P ID ;
                       RT --root STATE start ID ; wait for the container init
                       to exit ; RT --root STATE delete ID
        (c) limits:    (b) with the BUNDLE-limits bundle: memory, cpu and
                       pids limits applied by the runtime (if that bundle
                       exists)
      This process is a child subreaper, so the container init (orphaned when
      `create` exits) is reparented to it and its exit is waited for exactly.
      Timed iterations spawn the runtime directly (posix_spawn + wait4 on a
      pidfd-bounded wait). A further untimed RSS pass (--rss-iters) repeats
      both workloads and records ru_maxrss from wait4 on every runtime
      invocation; see ORPHAN_SH for why those are started through a shell.

  bench.py report FILE.json... [--json-out FILE]
      Print the comparison table.

  bench.py shell-report FILE
      Print the plain shell loops' table (lines of tests/bench/shell_loop.sh:
      LOOP RUNTIME ITERS TOTAL_NS FAILED, one per round, loop and runtime):
      per loop and runtime the median over rounds of the mean per iteration,
      and hull's ratios to crun and runc.
"""

import argparse
import collections
import ctypes
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


class BenchError(Exception):
    pass


class Timeout(BenchError):
    pass


class Terminated(BenchError):
    pass


# --------------------------------------------------------------------------
# process helpers


def set_child_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(PR_SET_CHILD_SUBREAPER): " + os.strerror(err))


def reap_strays():
    """Reap any zombie that was reparented to us. Only called when no
    tracked process is outstanding."""
    n = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return n
        if pid == 0:
            return n
        n += 1


def our_children():
    me, kids = os.getpid(), []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces and parentheses
        if int(st.rsplit(")", 1)[1].split()[1]) == me:
            kids.append(int(d))
    return kids


def kill_our_children(rounds=10):
    """After a failure: SIGKILL everything that is (or, as we are a
    subreaper, becomes) our child -- hung runtimes, stray container inits --
    and reap it. Returns how many processes were killed."""
    n = 0
    for _ in range(rounds):
        kids = our_children()
        if not kids:
            break
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
                n += 1
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while our_children() and time.monotonic() < deadline:
            reap_strays()
            time.sleep(0.01)
        reap_strays()
    return n


def wait_pid(pid, timeout, allow_nonchild=False):
    """Wait for `pid` with a timeout; returns (status, rusage). Uses a pidfd
    so waiting does not poll and the timing stays exact. On timeout the
    process is SIGKILLed (and reaped) and Timeout is raised. With
    allow_nonchild, a process that is not our child is waited for through
    its pidfd only and (None, None) is returned."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = None  # already reaped by someone else, or never existed
    if pidfd is not None:
        try:
            p = select.poll()
            p.register(pidfd, select.POLLIN)
            ready = p.poll(timeout * 1000)
        finally:
            os.close(pidfd)
        if not ready:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.wait4(pid, 0)
            except ChildProcessError:
                pass
            raise Timeout("pid %d did not exit within %ss" % (pid, timeout))
    try:
        _, status, ru = os.wait4(pid, 0)
    except ChildProcessError:
        if allow_nonchild:
            return None, None
        raise
    return status, ru


def status_str(status):
    if os.WIFEXITED(status):
        return "exit %d" % os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return "killed by signal %d" % os.WTERMSIG(status)
    return "status 0x%x" % status


def tail(path, n=600):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").strip()
    return text[-n:]


# Peak RSS needs care: ru_maxrss of a process includes the peak RSS of every
# address space it had, and a child spawned by Python (vfork or fork) starts
# out in Python's address space, so wait4 on a runtime spawned directly by us
# reports at least Python's own ~10+ MiB. For the RSS pass each runtime
# invocation is therefore started by a small shell that forks it in the
# background and exits at once: the runtime (forked from the ~1 MiB shell) is
# reparented to us, the subreaper, and our wait4 on it sees its own peak RSS.
# Timed iterations spawn the runtime directly (posix_spawn) so that no shell
# start-up is included in the timings.
# The shell execs echo (rather than running its builtin and exiting) so that
# it cannot reap a runtime that exits very quickly: dash and busybox sh
# sometimes do that on exit, and then the rusage would be lost to us.
ORPHAN_SH = 'log=$1; shift; "$@" </dev/null >"$log" 2>&1 & exec /bin/echo $!'


class Runner:
    def __init__(self, binary, state, log, timeout):
        self.binary = binary
        self.state = state
        self.log = log
        self.timeout = timeout
        self.rss_mode = False
        self.maxrss = {}  # command -> max ru_maxrss (KiB), from the RSS pass
        self.env = dict(os.environ)
        self.sh = "/bin/sh"

    def spawn(self, argv):
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, self.log,
             os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        return os.posix_spawn(argv[0], argv, self.env, file_actions=actions)

    def spawn_orphan(self, argv):
        """Start argv via ORPHAN_SH; returns its pid once it is our child."""
        r, w = os.pipe()
        try:
            shargv = [self.sh, "-c", ORPHAN_SH, "sh", self.log] + argv
            actions = [
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, w, 1),
                (os.POSIX_SPAWN_CLOSE, r),
            ]
            shpid = os.posix_spawn(shargv[0], shargv, self.env, file_actions=actions)
        finally:
            os.close(w)
        try:
            data = b""
            while True:
                chunk = os.read(r, 64)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(r)
        wait_pid(shpid, self.timeout)  # once it is gone, its child is ours
        try:
            return int(data.strip())
        except ValueError:
            raise BenchError("could not start %s through %s" % (argv[0], self.sh))

    def call(self, *args, check=True):
        """Run one runtime command; returns (elapsed_ns, status)."""
        argv = [self.binary, "--root", self.state] + list(args)
        t0 = time.perf_counter_ns()
        pid = self.spawn_orphan(argv) if self.rss_mode else self.spawn(argv)
        try:
            status, ru = wait_pid(pid, self.timeout)
        except Timeout:
            raise Timeout("`%s %s` timed out after %ss: %s"
                          % (os.path.basename(self.binary), " ".join(args),
                             self.timeout, tail(self.log) or "(no output)"))
        except ChildProcessError:
            raise BenchError("lost track of `%s` (pid %d was reaped elsewhere)"
                             % (" ".join(args), pid))
        dt = time.perf_counter_ns() - t0
        cmd = args[0]
        if self.rss_mode:
            self.maxrss[cmd] = max(self.maxrss.get(cmd, 0), ru.ru_maxrss)
        if check and status != 0:
            raise BenchError("`%s %s` failed (%s): %s"
                             % (os.path.basename(self.binary), " ".join(args),
                                status_str(status), tail(self.log) or "(no output)"))
        return dt, status

    def quiet(self, *args):
        """Best-effort command (cleanup); ignores failures and timeouts."""
        try:
            return self.call(*args, check=False)[1]
        except BenchError:
            return None


# --------------------------------------------------------------------------
# prepare

# Resource limits of workload (c): what a typical pod sets.
LIMITS = {
    "memory": {"limit": 64 << 20, "swap": 64 << 20},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000},
    "pids": {"limit": 64},
}


def cmd_prepare(a):
    rootfs = os.path.abspath(a.rootfs)
    if not os.path.isdir(rootfs):
        raise SystemExit("prepare: rootfs %s does not exist" % rootfs)
    os.makedirs(a.bundle, exist_ok=True)
    cfg_path = os.path.join(a.bundle, "config.json")
    if os.path.exists(cfg_path):
        os.unlink(cfg_path)
    subprocess.run([a.spec_from, "spec"], cwd=a.bundle, check=True,
                   stdin=subprocess.DEVNULL, timeout=30)
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = ["/bin/true"]
    cfg["process"]["terminal"] = False
    cfg["root"] = {"path": rootfs, "readonly": True}
    with open(cfg_path + ".tmp", "w") as f:
        json.dump(cfg, f, indent=2)
    os.rename(cfg_path + ".tmp", cfg_path)
    print("bundle: %s (rootfs %s)" % (a.bundle, rootfs))
    limits = a.bundle.rstrip("/") + "-limits"
    os.makedirs(limits, exist_ok=True)
    cfg.setdefault("linux", {}).setdefault("resources", {}).update(LIMITS)
    with open(os.path.join(limits, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    print("bundle with limits: %s" % limits)


# --------------------------------------------------------------------------
# run


def bench_run(r, ids, iters, warmup, deadline, res):
    """(a) run + delete."""
    samples, run_ns, del_ns = [], [], []
    delete_nonzero = 0
    for i in range(warmup + iters):
        if time.monotonic() > deadline:
            raise BenchError("time budget exhausted after %d of %d iterations"
                             % (len(samples), iters))
        cid = ids("a", i)
        t0 = time.perf_counter_ns()
        try:
            d1, _ = r.call("run", "--bundle", r.bundle, cid)
        except BenchError:
            kill_our_children()
            r.quiet("delete", "--force", cid)
            kill_our_children()
            raise
        # runc/crun remove the container when `run` returns, so this delete
        # usually fails with "does not exist"; its cost is still measured.
        d2, st = r.call("delete", cid, check=False)
        dt = time.perf_counter_ns() - t0
        reap_strays()
        if i >= warmup:
            samples.append(dt)
            run_ns.append(d1)
            del_ns.append(d2)
            if st != 0:
                delete_nonzero += 1
    res["samples_ms"] = [x / 1e6 for x in samples]
    res["phases_ms"] = {"run": med_ms(run_ns), "delete": med_ms(del_ns)}
    res["delete_nonzero"] = delete_nonzero


def bench_lifecycle(r, ids, iters, warmup, deadline, res, pidfile_dir, bundle=None):
    """(b) create + start + wait + delete (and (c): the same, another bundle)."""
    bundle = bundle or r.bundle
    samples = []
    ph = {"create": [], "start": [], "wait": [], "delete": []}
    bad_exit = not_child = 0
    for i in range(warmup + iters):
        if time.monotonic() > deadline:
            raise BenchError("time budget exhausted after %d of %d iterations"
                             % (len(samples), iters))
        cid = ids("b", i)
        pidfile = os.path.join(pidfile_dir, cid + ".pid")
        cpid = None
        t0 = time.perf_counter_ns()
        try:
            d_create, _ = r.call("create", "--bundle", bundle,
                                 "--pid-file", pidfile, cid)
            try:
                with open(pidfile) as f:
                    cpid = int(f.read().strip())
            except (OSError, ValueError) as e:
                raise BenchError("create succeeded but pid file %s is unusable: %s"
                                 % (pidfile, e))
            d_start, _ = r.call("start", cid)
            tw = time.perf_counter_ns()
            try:
                status, _ = wait_pid(cpid, r.timeout, allow_nonchild=True)
            except Timeout:
                raise BenchError("container init %d did not exit within %ss "
                                 "after start" % (cpid, r.timeout))
            cpid = None
            if status is None:
                not_child += 1
            d_wait = time.perf_counter_ns() - tw
            d_delete, _ = r.call("delete", cid)
        except BenchError:
            if cpid is not None:
                try:
                    os.kill(cpid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            kill_our_children()
            r.quiet("delete", "--force", cid)
            kill_our_children()
            raise
        finally:
            try:
                os.unlink(pidfile)
            except OSError:
                pass
        dt = time.perf_counter_ns() - t0
        reap_strays()
        if i >= warmup:
            samples.append(dt)
            ph["create"].append(d_create)
            ph["start"].append(d_start)
            ph["wait"].append(d_wait)
            ph["delete"].append(d_delete)
            if status:
                bad_exit += 1
    res["samples_ms"] = [x / 1e6 for x in samples]
    res["phases_ms"] = {k: med_ms(v) for k, v in ph.items()}
    res["container_nonzero_exit"] = bad_exit
    res["container_not_child"] = not_child


def med_ms(ns_list):
    return statistics.median(ns_list) / 1e6 if ns_list else None


def runtime_version(binary):
    try:
        out = subprocess.run([binary, "--version"], stdin=subprocess.DEVNULL,
                             capture_output=True, timeout=10, text=True)
        line = (out.stdout or out.stderr).strip().splitlines()
        return line[0] if line else "?"
    except Exception as e:  # noqa: BLE001
        return "? (%s)" % e


def leftover_cleanup(r, prefix):
    """Delete any container of ours that is still listed."""
    try:
        out = subprocess.run([r.binary, "--root", r.state, "list", "-q"],
                             stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=r.timeout, text=True)
    except Exception:  # noqa: BLE001
        return None
    if out.returncode != 0:
        return None
    left = [x for x in out.stdout.split() if x.startswith(prefix)]
    for cid in left:
        r.quiet("delete", "--force", cid)
    return left


def cmd_run(a):
    res = {
        "runtime": a.runtime,
        "binary": a.binary,
        "iters": a.iters,
        "warmup": a.warmup,
        "ok": False,
        "error": None,
        "run": {"ok": False, "error": "not run"},
        "lifecycle": {"ok": False, "error": "not run"},
        "limits": {"ok": False, "error": "not run"},
        "maxrss_kib": None,
    }

    def save():
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=1)
        os.rename(tmp, a.out)

    if not (os.path.isfile(a.binary) and os.access(a.binary, os.X_OK)):
        res["error"] = "binary not found: %s" % a.binary
        res["run"]["error"] = res["lifecycle"]["error"] = res["error"]
        save()
        print("%s: %s" % (a.runtime, res["error"]), file=sys.stderr)
        return 0

    set_child_subreaper()
    os.makedirs(a.state, exist_ok=True)
    res["version"] = runtime_version(a.binary)
    deadline = time.monotonic() + a.budget

    def on_term(signum, frame):
        # Outer time limit: stop, clean up and still write what we have.
        signal.signal(signum, signal.SIG_IGN)
        raise Terminated("terminated by signal %d (time limit?)" % signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    terminated = False
    r = Runner(a.binary, os.path.abspath(a.state),
               os.path.join(os.path.dirname(os.path.abspath(a.out)),
                            "%s.log" % a.runtime),
               a.timeout)
    r.bundle = os.path.abspath(a.bundle)
    prefix = "hullbench-%s-%d-" % (a.runtime, os.getpid())

    def ids(kind, i):
        return "%s%s%d" % (prefix, kind, i)

    pidfile_dir = os.path.dirname(os.path.abspath(a.state))
    limits_bundle = r.bundle.rstrip("/") + "-limits"
    workloads = [("run", bench_run, ()),
                 ("lifecycle", bench_lifecycle, (pidfile_dir,))]
    if os.path.isfile(os.path.join(limits_bundle, "config.json")):
        workloads.append(("limits", lambda r_, ids_, *rest: bench_lifecycle(
            r_, lambda kind, i: ids_("c" + kind, i), *rest, bundle=limits_bundle),
            (pidfile_dir,)))
    else:
        res["limits"]["error"] = "no bundle %s" % limits_bundle
    for name, fn, extra in workloads:
        sub = {"ok": False, "error": None}
        res[name] = sub
        if terminated:
            sub["error"] = "skipped: terminated"
            continue
        t = time.monotonic()
        try:
            fn(r, ids, a.iters, a.warmup, deadline, sub, *extra)
            sub["ok"] = True
            s = sub["samples_ms"]
            sub["median_ms"] = statistics.median(s)
            sub["mean_ms"] = statistics.fmean(s)
            sub["min_ms"] = min(s)
            sub["p90_ms"] = sorted(s)[int(0.9 * (len(s) - 1))]
            print("%s: %-9s median %7.2f ms  (%d iters, %.1fs)"
                  % (a.runtime, name, sub["median_ms"], len(s),
                     time.monotonic() - t), file=sys.stderr)
        except (BenchError, OSError) as e:
            sub["error"] = "%s: %s" % (type(e).__name__, e) if isinstance(e, OSError) else str(e)
            terminated = terminated or isinstance(e, Terminated)
            print("%s: %s FAILED: %s" % (a.runtime, name, e), file=sys.stderr)
        save()

    # RSS pass (see ORPHAN_SH): a few untimed iterations of each workload
    # that worked, every runtime invocation started through the shell.
    if not terminated and a.rss_iters > 0:
        r.rss_mode = True
        try:
            try:
                _, ru = wait_pid(r.spawn_orphan(["/bin/true"]), r.timeout)
            except ChildProcessError:
                raise BenchError("orphaned /bin/true was not reparented to us")
            res["rss_floor_kib"] = ru.ru_maxrss  # /bin/true started the same way
            for name, fn, extra in (("run", bench_run, ()),
                                    ("lifecycle", bench_lifecycle, (pidfile_dir,))):
                if res[name]["ok"]:
                    fn(r, lambda kind, i: ids("r" + kind, i), a.rss_iters, 0,
                       deadline, {}, *extra)
        except (BenchError, OSError) as e:
            res["rss_error"] = str(e)
            print("%s: RSS pass FAILED: %s" % (a.runtime, e), file=sys.stderr)
        r.rss_mode = False

    left = leftover_cleanup(r, prefix)
    res["leftover_containers"] = left
    res["killed_strays"] = kill_our_children()
    res["maxrss_by_command_kib"] = r.maxrss
    res["maxrss_kib"] = max(r.maxrss.values()) if r.maxrss else None
    res["ok"] = res["run"]["ok"] and res["lifecycle"]["ok"]
    if not res["ok"]:
        res["error"] = "; ".join("%s: %s" % (k, res[k]["error"])
                                 for k in ("run", "lifecycle") if not res[k]["ok"])
    save()
    return 0


# --------------------------------------------------------------------------
# report


def fmt_ms(v):
    return "%.2f" % v if v is not None else "-"


def cmd_report(a):
    results = []
    for path in a.files:
        name = os.path.basename(path).rsplit(".", 1)[0]
        try:
            with open(path) as f:
                results.append(json.load(f))
        except (OSError, ValueError) as e:
            results.append({"runtime": name, "ok": False,
                            "error": "no results (%s)" % (
                                "benchmark process died or was killed" if isinstance(e, FileNotFoundError) else e),
                            "run": {"ok": False}, "lifecycle": {"ok": False},
                            "limits": {"ok": False}})
    by = {r["runtime"]: r for r in results}

    def med(r, k):
        sub = r.get(k) or {}
        return sub.get("median_ms") if sub.get("ok") else None

    iters = max((r.get("iters") or 0) for r in results) if results else 0
    print()
    print("Container start-up benchmark (%d iterations, /bin/true, busybox rootfs)" % iters)
    print("  (a) run     = `RT run --bundle B ID` + `RT delete ID`")
    print("  (b) lifecyc = `RT create --pid-file P` + `RT start` + wait(init) + `RT delete`")
    print("  (c) limits  = (b) with memory 64 MiB, cpu shares/quota and pids 64 set")
    print()
    hdr = "%-6s %13s %13s %13s %14s  %s" % ("", "(a) run", "(b) lifecyc", "(c) limits", "peak RSS", "")
    hdr2 = "%-6s %13s %13s %13s %14s  %s" % ("rt", "median ms", "median ms", "median ms", "runtime MiB", "status / version")
    print(hdr)
    print(hdr2)
    print("-" * 92)
    for r in results:
        rss = r.get("maxrss_kib")
        rss_s = "%.1f" % (rss / 1024.0) if rss else "-"
        if r.get("ok"):
            status = "ok  " + (r.get("version") or "")
        else:
            status = "FAILED: " + (r.get("error") or "?")
        if r.get("ok") and not (r.get("limits") or {}).get("ok"):
            status += "  (c) failed: " + str((r.get("limits") or {}).get("error"))
        print("%-6s %13s %13s %13s %14s  %s" % (r["runtime"], fmt_ms(med(r, "run")),
                                                 fmt_ms(med(r, "lifecycle")),
                                                 fmt_ms(med(r, "limits")), rss_s,
                                                 status.replace("\n", " | ")[:400]))
    print()

    hull = by.get("hull")
    print("Ratios (median time; < 1.00 means hull is faster):")
    for other in ("crun", "runc"):
        o = by.get(other)
        parts = []
        for k, label in (("run", "(a)"), ("lifecycle", "(b)"), ("limits", "(c)")):
            h = med(hull, k) if hull else None
            x = med(o, k) if o else None
            parts.append("%s %s" % (label, "%.2f" % (h / x) if h and x else "n/a"))
        print("  hull/%-4s  %s" % (other, "   ".join(parts)))
    print()

    print("Per-phase medians (ms):")
    for r in results:
        pr = (r.get("run") or {}).get("phases_ms") or {}
        pl = (r.get("lifecycle") or {}).get("phases_ms") or {}
        pc = (r.get("limits") or {}).get("phases_ms") or {}
        if not pr and not pl:
            continue
        s = "  %-5s" % r["runtime"]
        if pr:
            s += "  run %s + delete %s" % (fmt_ms(pr.get("run")), fmt_ms(pr.get("delete")))
        if pl:
            s += "  | create %s start %s wait %s delete %s" % tuple(
                fmt_ms(pl.get(k)) for k in ("create", "start", "wait", "delete"))
        if pc:
            s += "  | limits: create %s delete %s" % (fmt_ms(pc.get("create")), fmt_ms(pc.get("delete")))
        print(s)
        notes = []
        dn = (r.get("run") or {}).get("delete_nonzero")
        if dn:
            notes.append("delete after run failed %d/%d times (run already "
                         "removed the container)" % (dn, r.get("iters")))
        cn = (r.get("lifecycle") or {}).get("container_nonzero_exit")
        if cn:
            notes.append("container exited non-zero %d times" % cn)
        mr = r.get("maxrss_by_command_kib") or {}
        if mr:
            notes.append("peak RSS MiB by command: " + ", ".join(
                "%s %.1f" % (k, v / 1024.0) for k, v in sorted(mr.items())))
        if r.get("rss_error"):
            notes.append("RSS pass failed: " + r["rss_error"])
        if r.get("killed_strays"):
            notes.append("killed %d stray processes at the end" % r["killed_strays"])
        if r.get("leftover_containers"):
            notes.append("leftover containers deleted: %d" % len(r["leftover_containers"]))
        for n in notes:
            print("         note: " + n)
    floors = [r["rss_floor_kib"] for r in results if r.get("rss_floor_kib")]
    if floors:
        print("Peak RSS = max ru_maxrss (wait4) over the runtime processes of an "
              "untimed pass;\n  each includes its pre-exec shell fork, ~%.1f MiB "
              "(/bin/true measured the same way)." % (max(floors) / 1024.0))
    print()

    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(results, f, indent=1)
        print("JSON results: %s" % a.json_out)
    return 0


SHELL_LOOPS = (
    ("run", "run /bin/true"),
    ("rundel", "run + delete"),
    ("lifecycle", "create/start/wait/delete"),
    ("limits", "... with limits"),
)


def cmd_shell_report(a):
    failed = set()
    order = []
    seen = {}  # (loop, runtime) -> index of its last round
    by_round = {}  # (loop, runtime, round) -> ms per iteration
    with open(a.file) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 5:
                continue
            loop, rt, iters, total_ns, bad = parts[0], parts[1], int(parts[2]), int(parts[3]), parts[4]
            if rt not in order:
                order.append(rt)
            rnd = seen[(loop, rt)] = seen.get((loop, rt), -1) + 1
            if bad != "0":
                failed.add((loop, rt))
                continue
            by_round[(loop, rt, rnd)] = total_ns / 1e6 / max(iters, 1)

    def med(loop, rt):
        v = [ms for (lp, r, _), ms in by_round.items() if (lp, r) == (loop, rt)]
        return statistics.median(v) if v else None

    def paired(loop, other):
        """hull/other round by round (the two loops ran next to each other):
        median, min and max over the rounds both finished."""
        rs = [by_round[(loop, "hull", k)] / by_round[(loop, other, k)]
              for k in range(seen.get((loop, "hull"), -1) + 1)
              if (loop, "hull", k) in by_round and (loop, other, k) in by_round]
        return (statistics.median(rs), min(rs), max(rs)) if rs else None

    print()
    print("Plain shell loops: bash forks and execs every runtime command (stdio on")
    print("  /dev/null), as containerd and podman start a runtime; each figure is")
    print("  the loop's wall time ($EPOCHREALTIME around it) / iterations, the median")
    print("  over the rounds; runtimes interleaved round by round. The wait of")
    print("  create/start/wait/delete spins on `kill -0 PID` in the shell (a child")
    print("  subreaper, so it reaps the init) until the init is gone.")
    print()
    print("%-26s" % "ms per iteration" + "".join("%10s" % rt for rt in order)
          + "".join("%12s" % ("hull/" + o) for o in order if o != "hull"))
    for loop, label in SHELL_LOOPS:
        row = "%-26s" % label
        for rt in order:
            m = med(loop, rt)
            row += "%10s" % ("FAILED" if (loop, rt) in failed and m is None
                             else fmt_ms(m))
        h = med(loop, "hull")
        for o in order:
            if o == "hull":
                continue
            x = med(loop, o)
            row += "%12s" % ("%.2f" % (h / x) if h and x else "n/a")
        print(row)
    print()
    print("Paired: hull's loop / the other's loop of the same round (run one")
    print("  after the other), median over the rounds [min - max]; robust to the")
    print("  machine's drift from round to round, which the medians above are not.")
    print()
    print("%-26s" % "hull/runtime, paired" + "".join("%22s" % ("hull/" + o) for o in order if o != "hull"))
    for loop, label in SHELL_LOOPS:
        row = "%-26s" % label
        for o in order:
            if o == "hull":
                continue
            p = paired(loop, o)
            row += "%22s" % ("%.2f [%.2f - %.2f]" % p if p else "n/a")
        print(row)
    if failed:
        print("  failed (some command exited non-zero): "
              + ", ".join("%s %s" % k for k in sorted(failed)))
    rounds = max(collections.Counter((lp, r) for lp, r, _ in by_round).values(), default=0)
    print("  (%d rounds)" % rounds)
    print()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = p.add_subparsers(dest="cmd", required=True)

    pp = sp.add_parser("prepare")
    pp.add_argument("--rootfs", required=True)
    pp.add_argument("--bundle", required=True)
    pp.add_argument("--spec-from", default="runc")

    pr = sp.add_parser("run")
    pr.add_argument("--runtime", required=True)
    pr.add_argument("--binary", required=True)
    pr.add_argument("--bundle", required=True)
    pr.add_argument("--state", required=True)
    pr.add_argument("--out", required=True)
    pr.add_argument("--iters", type=int, default=100)
    pr.add_argument("--warmup", type=int, default=3)
    pr.add_argument("--timeout", type=float, default=30.0,
                    help="per invocation / per container wait, seconds")
    pr.add_argument("--rss-iters", type=int, default=5,
                    help="untimed iterations measuring peak RSS")
    pr.add_argument("--budget", type=float, default=600.0,
                    help="total seconds for this runtime")

    pt = sp.add_parser("report")
    pt.add_argument("files", nargs="+")
    pt.add_argument("--json-out")

    ps = sp.add_parser("shell-report")
    ps.add_argument("file")

    a = p.parse_args()
    return {"prepare": cmd_prepare, "run": cmd_run, "report": cmd_report,
            "shell-report": cmd_shell_report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
