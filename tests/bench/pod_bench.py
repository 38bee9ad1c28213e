#!/usr/bin/env python3
"""Pod benchmark: `hull pod run` / `hull pod rm` latency and memory per pod.

python3 stdlib only; must run as root. Called at the end of
tests/bench/bench.sh (so `make bench` prints it); can be run on its own:

    BENCH_POD_ITERS=5 python3 tests/bench/pod_bench.py

For each mode (no CNI: loopback only; CNI: bridge + host-local + portmap on a
bridge of its own), runs a 2-container pod (both `sleep 30`,
terminationGracePeriodSeconds 0, so `pod rm` kills at once) N times:
`pod run` (returns once the app containers run) then `pod rm`, timed by
wall clock. Prints the medians. One extra untimed pass per mode keeps a pod
running while it reads VmRSS (/proc/PID/status) of the sandbox holder, each
container's monitor and the pod supervisor.

Environment:
  BENCH_POD_ITERS=20     timed iterations per mode
  BENCH_POD_TIMEOUT=60   seconds allowed per hull invocation
  BENCH_POD_MODES="nocni cni"
  HULL                   hull binary (default target/<host triple>/release/hull)
  HULL_TEST_ROOTFS       rootfs used as the pods' image
                         (default target/fixtures/rootfs; `make fixtures`)

Everything it creates (temp --root, pods, bridge, IPAM dir) is removed at the
end, also on failure, Ctrl-C or SIGTERM; /proc/sys/net/ipv4/ip_forward (the
bridge plugin with isGateway turns it on) is restored. It sends no network
traffic.
"""

import ipaddress
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
ITERS = int(os.environ.get("BENCH_POD_ITERS", "20"))
TIMEOUT = int(os.environ.get("BENCH_POD_TIMEOUT", "60"))
MODES = os.environ.get("BENCH_POD_MODES", "nocni cni").split()
def host_triple():
    out = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("host: "))


HULL = os.path.abspath(os.environ.get("HULL") or os.path.join(REPO, "target", host_triple(), "release", "hull"))
ROOTFS = os.path.realpath(os.environ.get("HULL_TEST_ROOTFS") or os.path.join(REPO, "target/fixtures/rootfs"))
CNI_PLUGIN_DIRS = ["/usr/lib/cni", "/opt/cni/bin"]
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
MODE_LABEL = {"nocni": "no CNI (lo only)", "cni": "CNI bridge"}

MANIFEST = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: one
    image: {rootfs}
    command: [sleep, "30"]
  - name: two
    image: {rootfs}
    command: [sleep, "30"]
"""


def log(msg):
    print(f"pod-bench: {msg}", flush=True)


class Interrupted(Exception):
    pass


class Bench:
    def __init__(self):
        self.pid = os.getpid()
        self.work = None
        self.live = []            # (root, pod name) possibly present
        self.bridge = None
        self.forward_before = None
        self.failures = []
        self.leftovers = []
        self.uids = []            # of every pod started, for the cgroup check

    # ---- hull invocations -------------------------------------------------

    def hull(self, root, *args, timeout=TIMEOUT):
        """Run hull; returns (rc, seconds, output). rc None on timeout."""
        cmd = [HULL, "--root", root, *args]
        # Each root with a state directory of its own (pod records, logs).
        env = dict(os.environ, HULL_STATE_DIR=os.path.join(root, "state"))
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as e:
            out = (e.output or b"").decode(errors="replace")
            return None, time.monotonic() - t0, out + f"\n(timed out after {timeout}s)"
        return p.returncode, time.monotonic() - t0, p.stdout.decode(errors="replace")

    def record(self, root, name):
        """The pod as `hull pod ps -o json` shows it (its record, with the
        sandbox's addresses and holder pid), or None."""
        rc, _, out = self.hull(root, "pod", "ps", name, "-o", "json")
        if rc != 0:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    def pod_run(self, root, name, cni_dir):
        path = os.path.join(self.work, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(MANIFEST.format(name=name, rootfs=ROOTFS))
        self.live.append((root, name))
        rc, secs, out = self.hull(root, "pod", "run", "--cni-conf-dir", cni_dir,
                                  "--wait", str(max(5, TIMEOUT - 10)), path)
        rec = self.record(root, name)
        if rec and rec.get("uid"):
            self.uids.append(rec["uid"])
        running = (rec is not None and rec.get("phase") == "Running"
                   and all(c.get("state") == "Running" and c.get("containerId")
                           for c in rec.get("containers", []) if not c.get("init")))
        if rc != 0 or not running:
            state = rec and {c.get("name"): c.get("state") for c in rec.get("containers", [])}
            raise RuntimeError(f"pod run {name}: exit {rc}, phase "
                               f"{rec and rec.get('phase')}, containers {state}\n{out.strip()}")
        return secs, rec

    def pod_rm(self, root, name):
        rc, secs, out = self.hull(root, "pod", "rm", name)
        if rc != 0:
            raise RuntimeError(f"pod rm {name}: exit {rc}\n{out.strip()}")
        if os.path.exists(os.path.join(root, "state", "pod-records", name)):
            raise RuntimeError(f"pod rm {name}: pod directory still there")
        self.live.remove((root, name))
        return secs

    # ---- CNI --------------------------------------------------------------

    def make_cni(self, mode_dir):
        conf_dir = os.path.join(mode_dir, "cni")
        os.makedirs(conf_dir)
        if not any(os.path.exists(os.path.join(d, "bridge")) for d in CNI_PLUGIN_DIRS):
            raise RuntimeError("CNI bridge plugin not installed (containernetworking-plugins)")
        self.bridge = f"hbench{self.pid % 1000}"
        if subprocess.run(["ip", "link", "show", self.bridge], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=10).returncode == 0:
            b, self.bridge = self.bridge, None
            raise RuntimeError(f"bridge {b} already exists (not ours); not touching it")
        subnet = self.free_subnet()
        with open(IP_FORWARD) as f:
            self.forward_before = f.read()
        conf = {
            "cniVersion": "1.0.0", "name": f"hullpodbench{self.pid}",
            "plugins": [
                {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
                 "ipam": {"type": "host-local", "dataDir": os.path.join(mode_dir, "ipam"),
                          "ranges": [[{"subnet": subnet}]]}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        with open(os.path.join(conf_dir, "10-bench.conflist"), "w") as f:
            json.dump(conf, f)
        return conf_dir, subnet

    def free_subnet(self):
        """172.31.X.0/24 not overlapping any host route (the pod tests use
        X = 100..149, so start at 150 + pid % 50)."""
        routes = subprocess.run(["ip", "-o", "-4", "route", "show", "table", "all"],
                                capture_output=True, text=True, timeout=10).stdout
        used = []
        for line in routes.split("\n"):
            word = line.split()[0] if line.split() else ""
            if word in ("local", "broadcast", "unicast"):
                word = line.split()[1]
            try:
                used.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                pass
        used = [n for n in used if n.prefixlen > 0]
        for k in range(100):
            net = ipaddress.ip_network(f"172.31.{150 + (self.pid + k) % 100}.0/24")
            if not any(net.overlaps(u) for u in used):
                return str(net)
        raise RuntimeError("no free 172.31.X.0/24 subnet")

    # ---- memory -----------------------------------------------------------

    @staticmethod
    def status_kib(pid, fields=("VmRSS", "RssAnon", "RssFile")):
        out = {}
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in fields:
                        out[k] = int(v.split()[0])
        except OSError:
            return None
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        out["Pss"] = int(line.split()[1])
        except OSError:
            pass
        return out

    @staticmethod
    def argv(pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            return []

    def monitor_pid(self, root, cid):
        for e in os.listdir("/proc"):
            if not e.isdigit():
                continue
            a = self.argv(int(e))
            # The runtime layer's monitors run under <root>/pod-run.
            if "monitor" in a and cid in a and any(x == root or x.startswith(root + "/") for x in a):
                return int(e)
        return None

    def measure(self, root, rec):
        time.sleep(0.5)  # let the processes settle after start-up
        procs = []
        holder = rec.get("holderPid") or (rec.get("holder") or {}).get("pid")
        procs.append(("holder", "holder (hull-pause)", holder))
        for c in rec.get("containers", []):
            if c.get("init") or not c.get("containerId"):
                continue
            procs.append(("monitor", f"monitor {c['name']}", self.monitor_pid(root, c["containerId"])))
        procs.append(("supervisor", "supervisor", rec.get("supervisorPid")))
        out = []
        for kind, label, pid in procs:
            mem = self.status_kib(pid) if pid else None
            if mem is None:
                self.failures.append(f"memory: no process for {label} (pid {pid})")
            out.append((kind, label, pid, mem))
        return out

    # ---- the benchmark ----------------------------------------------------

    def run_mode(self, mode):
        mode_dir = os.path.join(self.work, mode)
        root = os.path.join(mode_dir, "root")
        os.makedirs(root)
        if mode == "cni":
            cni_dir, subnet = self.make_cni(mode_dir)
            log(f"{MODE_LABEL[mode]}: bridge {self.bridge}, subnet {subnet}")
        else:
            cni_dir = os.path.join(mode_dir, "no-cni")
            os.makedirs(cni_dir)
        runs, rms = [], []
        mem = None
        # Pass 0: untimed, measures memory while its pod runs (and warms up).
        for i in range(ITERS + 1):
            name = f"hb-{mode}-{self.pid}-{i}"
            secs, rec = self.pod_run(root, name, cni_dir)
            if i == 0:
                if mode == "cni" and not rec.get("ips"):
                    raise RuntimeError(f"pod {name} got no IP on the CNI network")
                mem = self.measure(root, rec)
            else:
                runs.append(secs)
            secs = self.pod_rm(root, name)
            if i > 0:
                rms.append(secs)
        return {"runs": runs, "rms": rms, "mem": mem}

    # ---- cleanup ----------------------------------------------------------

    def cleanup(self):
        for root, name in list(self.live):
            rec = self.record(root, name)
            rc, _, out = self.hull(root, "pod", "rm", name, timeout=40)
            if rc != 0 and os.path.exists(os.path.join(root, "state", "pod-records", name)):
                self.leftovers.append(f"pod rm {name} failed: {out.strip()[-300:]}")
                # Last resort: our own pod's processes, by pid.
                for pid in [rec and rec.get("supervisorPid"), rec and (rec.get("holderPid") or (rec.get("holder") or {}).get("pid"))]:
                    if pid and pid > 1:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
            self.live.remove((root, name))
        if self.work:
            # Processes of ours still around (monitors, supervisors) carry the
            # temp root in their command line.
            deadline = time.monotonic() + 5
            while True:
                left = [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != self.pid
                        and any(self.work in a for a in self.argv(int(e)))]
                if not left or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            for pid in left:
                self.leftovers.append(f"process {pid}: {' '.join(self.argv(pid))} (killed)")
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for uid in self.uids:
            for base in os.listdir("/sys/fs/cgroup"):
                cg = os.path.join("/sys/fs/cgroup", base, f"hull-pod-{uid}")
                if os.path.isdir(cg):
                    self.leftovers.append(f"cgroup {cg}")
        if self.bridge:
            try:
                slaves = subprocess.run(["ip", "-o", "link", "show", "master", self.bridge],
                                        capture_output=True, text=True, timeout=10).stdout.strip()
                if slaves:
                    self.leftovers.append(f"links on {self.bridge}: {slaves}")
                subprocess.run(["ip", "link", "del", self.bridge], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10)
            except (OSError, subprocess.SubprocessError) as e:
                self.leftovers.append(f"bridge {self.bridge}: {e}")
        if self.forward_before is not None:
            try:
                with open(IP_FORWARD, "w") as f:
                    f.write(self.forward_before)
            except OSError as e:
                self.leftovers.append(f"ip_forward not restored: {e}")
        if self.work:
            mounts = self.mounts_under(self.work)
            for m in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", m], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10)
            if mounts:
                self.leftovers.append(f"{len(mounts)} mount(s) under {self.work} (lazily unmounted)")
            # Never delete through a mount point (it could be the fixture rootfs).
            if self.mounts_under(self.work):
                self.leftovers.append(f"{self.work} kept: still has mounts")
            else:
                shutil.rmtree(self.work, ignore_errors=True)

    @staticmethod
    def mounts_under(path):
        out = []
        try:
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    mp = line.split()[4].replace("\\040", " ")
                    if mp == path or mp.startswith(path + "/"):
                        out.append(mp)
        except OSError:
            pass
        return out


# ---- report ----------------------------------------------------------------

def ms(xs):
    return f"{statistics.median(xs) * 1000:8.1f}" if xs else f"{'-':>8}"


def rng(xs):
    return f"{min(xs) * 1000:6.0f}..{max(xs) * 1000:<6.0f}" if xs else f"{'':14}"


def kib(v):
    return f"{v:>8}" if v is not None else f"{'?':>8}"


def mib(v):
    return f"{v / 1024:6.2f} MiB" if v is not None else "     ?    "


def report(results):
    modes = [m for m in MODES if m in results]
    print()
    print(f"Pod lifecycle, 2 containers (sleep 30), grace 0, {ITERS} timed iterations per mode (ms)")
    print(f"  {'mode':<18} {'n':>3} {'run->Running':>13} {'(min..max)':>15} {'rm':>9} {'(min..max)':>15}")
    for m in modes:
        r = results[m]
        if "error" in r and not r.get("runs"):
            print(f"  {MODE_LABEL[m]:<18} failed: {r['error'].splitlines()[0]}")
            continue
        print(f"  {MODE_LABEL[m]:<18} {len(r['runs']):>3} {ms(r['runs']):>13} {rng(r['runs']):>15}"
              f" {ms(r['rms']):>9} {rng(r['rms']):>15}")
    print("  (medians; `pod run` wall time until it returns with all app containers running,")
    print("   `pod rm` wall time until everything of the pod is gone)")

    mem_modes = [m for m in modes if results[m].get("mem")]
    if not mem_modes:
        return
    print()
    print("Memory while one pod runs: VmRSS in KiB (PSS from smaps_rollup in brackets)")
    labels = []
    for m in mem_modes:
        for _, label, _, _ in results[m]["mem"]:
            if label not in labels:
                labels.append(label)
    head = "".join(f" {MODE_LABEL[m]:>22}" for m in mem_modes)
    print(f"  {'process':<34}{head}")

    def cell(mem, key="VmRSS"):
        if mem is None:
            return f" {'?':>22}"
        pss = mem.get("Pss")
        return f" {mem.get(key, 0):>10} [{pss if pss is not None else '?':>8}]  "

    def row(label, vals):
        print(f"  {label:<34}" + "".join(vals))

    for label in labels:
        vals = []
        for m in mem_modes:
            mem = next((x[3] for x in results[m]["mem"] if x[1] == label), None)
            vals.append(cell(mem))
        row(label, vals)

    def total(m, kinds, key):
        xs = [x[3].get(key) if x[3] else None for x in results[m]["mem"] if x[0] in kinds]
        return None if not xs or None in xs else sum(xs)

    def tcell(m, kinds):
        rss, pss = total(m, kinds, "VmRSS"), total(m, kinds, "Pss")
        return f" {kib(rss):>10} [{pss if pss is not None else '?':>8}]  "

    print(f"  {'-' * 34}" + "".join(f" {'-' * 22}" for _ in mem_modes))
    row("holder + monitors (RSS per pod)", [tcell(m, ("holder", "monitor")) for m in mem_modes])
    row("supervisor (separately)", [tcell(m, ("supervisor",)) for m in mem_modes])
    row("  = per pod incl. supervisor", [tcell(m, ("holder", "monitor", "supervisor")) for m in mem_modes])
    vals = []
    for m in mem_modes:
        mons = [x[3] for x in results[m]["mem"] if x[0] == "monitor"]
        # Issue 13's goal is a monitor's Pss (its share of the pages it
        # maps), at most 1 MiB.
        if mons and None not in mons and all(x.get("Pss") is not None for x in mons):
            avg = sum(x["Pss"] for x in mons) / len(mons)
            verdict = "ok" if avg <= 1024 else "over"
            vals.append(f" {mib(avg):>14} {verdict:>6}  ")
        else:
            vals.append(f" {'?':>22}")
    row("monitor per container, Pss (<= 1 MiB?)", vals)
    for m in mem_modes:
        for kind, label, pid, mem in results[m]["mem"]:
            if mem:
                print(f"  {MODE_LABEL[m]} {label}: pid {pid}, RssAnon {mem.get('RssAnon')} KiB,"
                      f" RssFile {mem.get('RssFile')} KiB")
    conmon = shutil.which("conmon") or next(
        (p for p in ("/usr/libexec/podman/conmon", "/usr/bin/conmon", "/usr/local/bin/conmon")
         if os.access(p, os.X_OK)), None)
    if conmon:
        try:
            v = subprocess.run([conmon, "--version"], capture_output=True, text=True,
                               timeout=10).stdout.splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            v = "version unknown"
        print(f"  anchor: conmon is installed ({conmon}, {v}); not measured by this script")
    else:
        print("  anchor: conmon is not installed on this machine: no conmon comparison")


def main():
    if os.geteuid() != 0:
        print("pod-bench: must run as root", file=sys.stderr)
        return 1
    if not os.access(HULL, os.X_OK):
        print(f"pod-bench: no hull binary at {HULL} (cargo build --release)", file=sys.stderr)
        return 1
    if not os.path.isfile(os.path.join(ROOTFS, ".complete")):
        print(f"pod-bench: no fixture rootfs at {ROOTFS} (make fixtures)", file=sys.stderr)
        return 1

    bench = Bench()
    interrupted = []

    def on_signal(signum, _frame):
        interrupted.append(signum)
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    results = {}
    rc = 0
    try:
        bench.work = tempfile.mkdtemp(prefix="hull-podbench.", dir="/tmp")
        v = subprocess.run([HULL, "--version"], capture_output=True, text=True, timeout=10).stdout
        log(f"{HULL} ({v.splitlines()[0] if v else '?'}), {ITERS} iterations (+1 untimed) per mode")
        log(f"kernel {platform.release()}, {os.cpu_count()} CPUs, image {ROOTFS}")
        for mode in MODES:
            if mode not in MODE_LABEL:
                raise RuntimeError(f"unknown mode {mode!r} (BENCH_POD_MODES: nocni cni)")
            log(f"{MODE_LABEL[mode]} ...")
            try:
                results[mode] = bench.run_mode(mode)
            except RuntimeError as e:
                results[mode] = {"error": str(e), "runs": [], "rms": []}
                bench.failures.append(f"{MODE_LABEL[mode]}: {e}")
                rc = 1
    except Interrupted as e:
        log(f"interrupted ({e}); cleaning up")
        rc = 128 + interrupted[0]
    finally:
        # Cleanup must not be cut short by a second Ctrl-C / SIGTERM.
        def late(signum, _frame):
            interrupted.append(signum)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, late)
        bench.cleanup()

    if not interrupted:
        report(results)
    for f in bench.failures:
        print(f"pod-bench: FAILED: {f}", file=sys.stderr)
    if bench.leftovers:
        rc = rc or 1
        for l in bench.leftovers:
            print(f"pod-bench: leftover: {l}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
