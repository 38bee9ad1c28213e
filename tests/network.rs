//! Pod networking with the real CNI plugins (Debian's containernetworking-
//! plugins in /usr/lib/cni): pinned netns, loopback, bridge + host-local,
//! portmap, errors, DEL idempotence, and the `hull network` CLI.
//!
//! Each test has its own conflist in a temp dir, its own bridge
//! (`hnt<N>-<pid>`), subnet (172.31.<200+N>.0/24), host-local data dir,
//! network name, container id and netns. Traffic goes only to the test's
//! own pod address, bridge address and loopback. A [`TestNet`] guard DELs,
//! removes the netns and deletes the bridge whatever happens; each test ends
//! with a leftover check (netns file, mount, veth, bridge, iptables rules,
//! IP reservations).
mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{require_root, run_cmd, s, show};
use hull::network::{self, Attachment, CniConfig, CniOptions, PortMapping};
use serde_json::{json, Value};

const CMD: Duration = Duration::from_secs(15);

/// The bridge plugin with `isGateway` turns on IP forwarding host-wide
/// (v4, and v6 for v6 ranges). The tests need none (their traffic is
/// host <-> pod on the test's own bridge), so the values found before the
/// first test are put back when the last live [`TestNet`] goes.
const FORWARDING: [&str; 3] =
    ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding", "/proc/sys/net/ipv6/conf/default/forwarding"];
static LIVE_NETS: std::sync::Mutex<(usize, Vec<(&str, String)>)> = std::sync::Mutex::new((0, Vec::new()));

fn forwarding_hold() {
    let mut live = LIVE_NETS.lock().unwrap_or_else(|e| e.into_inner());
    if live.0 == 0 {
        live.1 = FORWARDING.iter().filter_map(|p| Some((*p, std::fs::read_to_string(p).ok()?))).collect();
    }
    live.0 += 1;
}

fn forwarding_release() {
    let mut live = LIVE_NETS.lock().unwrap_or_else(|e| e.into_inner());
    live.0 -= 1;
    if live.0 == 0 {
        for (path, value) in live.1.drain(..) {
            let _ = std::fs::write(path, value);
        }
    }
}

/// One test's private network and the guard that removes it.
struct TestNet {
    index: u8,
    bridge: String,
    net_name: String,
    id: String,
    dir: tempfile::TempDir,
    netns: Option<PathBuf>,
    /// Records to DEL at cleanup (as a caller would have stored them).
    records: Vec<Attachment>,
    /// Host veth names seen in results, checked at the end.
    veths: Vec<String>,
    /// Ports found on the bridge at cleanup (leaks), for the leftover check.
    stray_ports: Vec<String>,
    children: Vec<Child>,
}

impl TestNet {
    /// None (with a "skipped" note) when the test cannot run here.
    fn new(index: u8) -> Option<TestNet> {
        if !require_root() {
            return None;
        }
        for p in ["bridge", "host-local", "loopback", "portmap"] {
            if !Path::new("/usr/lib/cni").join(p).exists() {
                eprintln!("skipped: /usr/lib/cni/{p} missing (make setup installs containernetworking-plugins)");
                return None;
            }
        }
        let pid = std::process::id() % 100_000;
        forwarding_hold();
        let net = TestNet {
            index,
            bridge: format!("hnt{index}-{pid}"),
            net_name: format!("hull-test-{index}-{pid}"),
            id: format!("hnt{index}-{pid}-c"),
            dir: tempfile::Builder::new().prefix("hull-net-test").tempdir().expect("tempdir"),
            netns: None,
            records: Vec::new(),
            veths: Vec::new(),
            stray_ports: Vec::new(),
            children: Vec::new(),
        };
        let prefix = format!("172.31.{}.", net.octet());
        let routes = s(&run_cmd(Command::new("ip").args(["-4", "-o", "route", "show", "table", "all"]), CMD).stdout);
        let addrs = s(&run_cmd(Command::new("ip").args(["-4", "-o", "addr"]), CMD).stdout);
        if routes.contains(&prefix) || addrs.contains(&prefix) {
            eprintln!("skipped: test subnet {prefix}0/24 is in use on this host");
            return None;
        }
        Some(net)
    }

    fn octet(&self) -> u8 {
        200 + self.index
    }
    fn subnet(&self) -> String {
        format!("172.31.{}.0/24", self.octet())
    }
    fn gateway(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(172, 31, self.octet(), 1))
    }
    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }
    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }
    fn opts(&self) -> CniOptions {
        CniOptions { conf_dir: self.conf_dir(), timeout: Duration::from_secs(30), ..Default::default() }
    }

    fn bridge_plugin(&self) -> Value {
        json!({
            "type": "bridge", "bridge": self.bridge, "isGateway": true, "ipMasq": true,
            "ipam": {"type": "host-local", "dataDir": self.ipam_dir(), "ranges": [[{"subnet": self.subnet()}]]}
        })
    }

    /// Write the test's conflist: `plugins` as given.
    fn write_conflist(&self, plugins: Vec<Value>) {
        let list = json!({"cniVersion": "1.0.0", "name": self.net_name, "plugins": plugins});
        self.write_conf(list);
    }

    fn write_conf(&self, list: Value) {
        std::fs::create_dir_all(self.conf_dir()).unwrap();
        std::fs::write(self.conf_dir().join("10-test.conflist"), serde_json::to_vec_pretty(&list).unwrap()).unwrap();
    }

    /// The shipped default (examples/cni/10-hull.conflist), pointed at the
    /// test's bridge, subnet, data dir and name.
    fn write_shipped_default(&self) {
        let text = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cni/10-hull.conflist")).unwrap();
        let mut list: Value = serde_json::from_slice(&text).unwrap();
        list["name"] = json!(self.net_name);
        let bridge = &mut list["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        bridge["bridge"] = json!(self.bridge);
        bridge["ipam"]["ranges"] = json!([[{"subnet": self.subnet()}]]);
        bridge["ipam"]["dataDir"] = json!(self.ipam_dir());
        self.write_conf(list);
    }

    fn create_netns(&mut self) -> PathBuf {
        let ns = network::create_netns(&self.dir.path().join("netns"), "pod").expect("create netns");
        self.netns = Some(ns.clone());
        ns
    }

    /// Remember a record for cleanup (replacing an older one for the same
    /// ifname), as the pod layer stores it before and after ADD.
    fn track(&mut self, att: &Attachment) {
        self.records.retain(|a| a.ifname != att.ifname);
        self.records.push(att.clone());
        if let Some(r) = att.parsed_result() {
            for itf in r.interfaces.iter().filter(|i| i.sandbox.is_none() && i.name != self.bridge) {
                self.veths.push(itf.name.clone());
            }
        }
    }

    /// Undo everything; safe to call more than once.
    fn cleanup(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        for a in self.records.drain(..).rev() {
            if let Err(e) = a.del() {
                eprintln!("cleanup: DEL {}: {e}", a.ifname);
            }
        }
        if let Some(ns) = self.netns.take() {
            if let Err(e) = network::remove_netns(&ns) {
                eprintln!("cleanup: {e}");
            }
        }
        if link_exists(&self.bridge) {
            // Ports still on the bridge after every DEL are leaks: note
            // them for the leftover check, then remove them too.
            let ports = quiet_output(Command::new("ip").args(["-o", "link", "show", "master", &self.bridge]));
            for line in ports.lines() {
                let Some(name) = line.split(':').nth(1).map(|n| n.trim().split('@').next().unwrap_or("").to_string()) else { continue };
                if !name.is_empty() {
                    quiet_output(Command::new("ip").args(["link", "del", &name]));
                    self.stray_ports.push(name);
                }
            }
            quiet_output(Command::new("ip").args(["link", "del", &self.bridge]));
        }
    }

    fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        let nsdir = self.dir.path().join("netns");
        if let Ok(entries) = std::fs::read_dir(&nsdir) {
            for e in entries.flatten() {
                found.push(format!("netns file {}", e.path().display()));
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if mounts.contains(&self.dir.path().display().to_string()) {
            found.push(format!("a mount under {}", self.dir.path().display()));
        }
        if link_exists(&self.bridge) {
            found.push(format!("bridge {}", self.bridge));
        }
        for v in &self.veths {
            if link_exists(v) {
                found.push(format!("veth {v}"));
            }
        }
        for v in &self.stray_ports {
            found.push(format!("veth {v} (still on the bridge after DEL; removed by the guard)"));
        }
        for tool in ["iptables-save", "ip6tables-save"] {
            let out = s(&run_cmd(Command::new(tool).args(["-t", "nat"]), CMD).stdout)
                + &s(&run_cmd(Command::new(tool).args(["-t", "filter"]), CMD).stdout);
            for line in out.lines().filter(|l| l.contains(&self.id) || l.contains(&self.net_name)) {
                found.push(format!("{tool}: {line}"));
            }
        }
        found.extend(
            reserved_ips(&self.ipam_dir().join(&self.net_name))
                .into_iter()
                .map(|ip| format!("IP reservation {ip}")),
        );
        found
    }

    /// Clean up now and fail on anything left behind.
    fn finish(mut self) {
        self.cleanup();
        let left = self.leftovers();
        assert!(left.is_empty(), "left behind: {left:#?}");
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.cleanup();
        forwarding_release();
    }
}

fn link_exists(name: &str) -> bool {
    let mut cmd = Command::new("ip");
    cmd.args(["link", "show", "dev", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    quiet_status(&mut cmd)
}

/// Run a command without panicking (used from Drop): bounded in time,
/// killed when late; true if it succeeded.
fn quiet_status(cmd: &mut Command) -> bool {
    let Ok(mut child) = cmd.spawn() else { return false };
    let deadline = Instant::now() + CMD;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Like [`quiet_status`], returning stdout ("" on any failure).
fn quiet_output(cmd: &mut Command) -> String {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(_) => return String::new(),
    };
    let path = dir.path().join("out");
    let Ok(file) = std::fs::File::create(&path) else { return String::new() };
    cmd.stdin(Stdio::null()).stdout(file).stderr(Stdio::null());
    if !quiet_status(cmd) {
        return String::new();
    }
    std::fs::read_to_string(&path).unwrap_or_default()
}

/// IPs host-local still holds (one file per reserved address).
fn reserved_ips(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<IpAddr>().is_ok())
        .collect()
}

fn in_netns(ns: &Path, args: &[&str]) -> Output {
    run_cmd(Command::new("nsenter").arg(format!("--net={}", ns.display())).args(args), CMD)
}

/// One ICMP echo, up to 3 tries (the first can race ARP/bridge setup).
fn ping(ns: Option<&Path>, ip: IpAddr) -> bool {
    let args = ["busybox", "ping", "-c", "1", "-W", "2", &ip.to_string()].map(String::from);
    (0..3).any(|_| {
        let out = match ns {
            Some(ns) => in_netns(ns, &args.iter().map(String::as_str).collect::<Vec<_>>()),
            None => run_cmd(Command::new(&args[0]).args(&args[1..]), CMD),
        };
        out.status.success()
    })
}

fn lo_is_up(ns: &Path) -> bool {
    let out = in_netns(ns, &["ip", "-o", "link", "show", "lo"]);
    let text = s(&out.stdout);
    text.contains("<LOOPBACK,UP") && ping(Some(ns), IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[test]
fn add_gives_a_reachable_ip_and_del_frees_it() {
    let Some(mut net) = TestNet::new(1) else { return };
    let ns = net.create_netns();
    network::loopback_up(&ns, &net.id, &net.opts()).expect("loopback up");
    assert!(lo_is_up(&ns), "lo is not up in the new netns");
    net.write_conflist(vec![net.bridge_plugin()]);
    let cfg = CniConfig::discover(&net.opts()).unwrap();
    assert_eq!(cfg.list.name, net.net_name);

    let mut att = cfg.attachment(&net.id, &ns, "eth0");
    net.track(&att); // stored before ADD, as the pod layer does
    let result = att.add().expect("ADD");
    net.track(&att);
    let ips = result.pod_ips();
    assert_eq!(ips.len(), 1, "{result:?}");
    let IpAddr::V4(ip) = ips[0] else { panic!("not v4: {ips:?}") };
    assert_eq!(ip.octets()[..3], [172, 31, net.octet()], "{ip} outside {}", net.subnet());
    assert_eq!(result.ips[0].gateway, Some(net.gateway()));
    assert!(result
        .interfaces
        .iter()
        .any(|i| i.name == "eth0" && i.sandbox.as_deref() == Some(&*ns.to_string_lossy())));
    assert_eq!(reserved_ips(&net.ipam_dir().join(&net.net_name)), vec![ip.to_string()]);

    assert!(ping(None, ips[0]), "host cannot ping the pod at {ip}");
    assert!(ping(Some(&ns), net.gateway()), "the pod cannot reach the bridge address {}", net.gateway());
    att.check().expect("CHECK");
    // The leftover check sees a live attachment (so its silence later means something).
    let live = net.leftovers();
    for kind in ["netns file", "a mount", "bridge", "veth", "iptables-save", "IP reservation"] {
        assert!(live.iter().any(|l| l.starts_with(kind)), "leftover check misses {kind}: {live:#?}");
    }

    // After a "crash": DEL from the stored record alone; twice.
    let stored: Attachment = serde_json::from_str(&serde_json::to_string(&att).unwrap()).unwrap();
    stored.del().expect("DEL");
    for v in &net.veths {
        assert!(!link_exists(v), "veth {v} still there after DEL");
    }
    assert!(!s(&in_netns(&ns, &["ip", "-o", "link"]).stdout).contains("eth0"), "eth0 still in the netns");
    assert!(reserved_ips(&net.ipam_dir().join(&net.net_name)).is_empty(), "IP not freed");
    stored.del().expect("second DEL");
    assert!(lo_is_up(&ns), "DEL of eth0 must not touch lo");

    // The freed address space gives an IP again.
    let mut again = cfg.attachment(&net.id, &ns, "eth0");
    let r2 = again.add().expect("second ADD");
    net.track(&again);
    assert_eq!(r2.pod_ips().len(), 1);
    assert!(ping(None, r2.pod_ips()[0]), "host cannot ping the re-added pod");
    again.del().expect("DEL after second ADD");
    net.finish();
}

const LISTENER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(1)
s.settimeout(20)
print("listening", flush=True)
c, a = s.accept()
c.settimeout(10)
d = c.recv(100)
c.sendall(b"pong:" + d)
c.close()
print("got", d.decode(), "from", a[0], flush=True)
"#;

/// A free TCP port on the host, so the DNAT rule hijacks nothing.
fn free_host_port(seed: u32) -> u16 {
    for i in 0..200u32 {
        let port = 30000 + ((seed + i * 7) % 20000) as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free host port");
}

#[test]
fn host_port_mapping_reaches_a_listener_in_the_pod() {
    let Some(mut net) = TestNet::new(2) else { return };
    if Command::new("iptables")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        eprintln!("skipped: no iptables (portmap needs it)");
        return;
    }
    let ns = net.create_netns();
    network::loopback_up(&ns, &net.id, &net.opts()).expect("loopback up");
    net.write_shipped_default();
    let host_port = free_host_port(std::process::id());
    let mut att = CniConfig::discover(&net.opts()).unwrap().attachment(&net.id, &ns, "eth0");
    att.port_mappings = vec![PortMapping { host_port, container_port: 8080, protocol: "tcp".into(), host_ip: String::new() }];
    net.track(&att);
    let result = att.add().expect("ADD with portmap");
    net.track(&att);
    let pod_ip = result.pod_ips()[0];
    assert!(matches!(pod_ip, IpAddr::V4(v4) if v4.octets()[2] == net.octet()), "{pod_ip}");
    let rules = s(&run_cmd(Command::new("iptables-save").args(["-t", "nat"]), CMD).stdout);
    assert!(
        rules.lines().any(|l| l.contains(&net.id) && l.contains(&format!("--dports {host_port}"))),
        "no DNAT rule for {host_port}:\n{rules}"
    );

    let out_path = net.dir.path().join("listener.out");
    let child = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["python3", "-c", LISTENER])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start listener");
    net.children.push(child);
    common::wait_for("listener", Duration::from_secs(10), || std::fs::read_to_string(&out_path).unwrap_or_default().contains("listening"));

    // Host address (the bridge's) + hostPort, from the host.
    let target = SocketAddr::new(net.gateway(), host_port);
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5)).expect("connect to hostPort");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(net.id.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read reply");
    assert_eq!(reply, format!("pong:{}", net.id));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut child = net.children.pop().unwrap();
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "listener did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let said = std::fs::read_to_string(&out_path).unwrap();
    assert!(said.contains(&format!("got {}", net.id)), "listener output: {said}");

    att.del().expect("DEL");
    let rules = s(&run_cmd(Command::new("iptables-save").args(["-t", "nat"]), CMD).stdout);
    assert!(!rules.contains(&net.id), "portmap rules left after DEL:\n{rules}");
    att.del().expect("second DEL");
    net.finish();
}

#[test]
fn a_failing_plugin_reports_its_message_and_leaves_nothing() {
    let Some(mut net) = TestNet::new(3) else { return };
    let ns = net.create_netns();
    // The bridge succeeds, then the second plugin fails: ADD must roll the
    // bridge back (veth, IP, masquerade rules).
    net.write_conflist(vec![net.bridge_plugin(), json!({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.hull_no_such_knob": "1"}})]);
    let mut att = CniConfig::discover(&net.opts()).unwrap().attachment(&net.id, &ns, "eth0");
    net.track(&att);
    let err = att.add().expect_err("ADD with a failing plugin");
    let msg = err.to_string();
    assert!(msg.contains("tuning") && msg.contains("hull_no_such_knob"), "error lacks the plugin's message: {msg}");
    assert!(att.result.is_none());
    let in_ns = s(&in_netns(&ns, &["ip", "-o", "link"]).stdout);
    assert!(!in_ns.contains("eth0"), "eth0 left in the netns: {in_ns}");
    let ports = s(&run_cmd(Command::new("ip").args(["-o", "link", "show", "master", &net.bridge]), CMD).stdout);
    assert!(ports.trim().is_empty(), "veth left on the bridge: {ports}");
    assert!(reserved_ips(&net.ipam_dir().join(&net.net_name)).is_empty(), "IP not freed after the failed ADD");

    // A bad config in the first plugin: host-local's own message.
    let mut bad = net.bridge_plugin();
    bad["ipam"]["ranges"] = json!([[{"subnet": "172.31.999.0/24"}]]);
    net.write_conflist(vec![bad]);
    let mut att = CniConfig::discover(&net.opts()).unwrap().attachment(&net.id, &ns, "eth0");
    let msg = att.add().expect_err("ADD with a bad subnet").to_string();
    assert!(msg.contains("172.31.999.0/24"), "error lacks the plugin's message: {msg}");
    assert!(in_netns(&ns, &["ip", "-o", "link"]).stdout.windows(4).all(|w| w != b"eth0"));

    // An unknown plugin type: named, nothing run.
    net.write_conflist(vec![json!({"type": "hull-no-such-plugin"})]);
    let mut att = CniConfig::discover(&net.opts()).unwrap().attachment(&net.id, &ns, "eth0");
    let msg = att.add().expect_err("unknown plugin").to_string();
    assert!(msg.contains("hull-no-such-plugin") && msg.contains("not found"), "{msg}");
    net.finish();
}

#[test]
fn netns_create_and_remove_leave_nothing() {
    if !require_root() {
        return;
    }
    let dir = tempfile::Builder::new().prefix("hull-netns-test").tempdir().unwrap();
    let nsdir = dir.path().join("netns");
    let ns = network::create_netns(&nsdir, "p1").expect("create");
    struct Guard(PathBuf);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = network::remove_netns(&self.0);
        }
    }
    let _guard = Guard(ns.clone());
    assert!(network::is_netns(&ns));
    let host = std::fs::metadata("/proc/self/ns/net").unwrap();
    let new = std::fs::metadata(&ns).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(host.ino(), new.ino(), "the pinned netns is the host's");
    // Made in a thread of its own (no fork): this thread stays in its netns.
    assert_eq!(std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino(), host.ino());
    // Only lo, and it is down until loopback_up.
    let links = s(&in_netns(&ns, &["ip", "-o", "link"]).stdout);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(!links.contains("<LOOPBACK,UP"), "{links}");

    // A second create with the same name fails and keeps the first.
    let e = network::create_netns(&nsdir, "p1").expect_err("duplicate name");
    assert!(e.to_string().contains("p1"), "{e}");
    assert!(network::is_netns(&ns), "a failed create destroyed the existing netns");
    // A directory that cannot be made: nothing left.
    std::fs::write(dir.path().join("file"), "").unwrap();
    assert!(network::create_netns(&dir.path().join("file"), "p2").is_err());

    // create_pod_netns: lo up; when the loopback plugin cannot run, nothing is left.
    let pod_ns = network::create_pod_netns(&nsdir, "p3", &CniOptions::default()).expect("create_pod_netns");
    let _guard3 = Guard(pod_ns.clone());
    assert!(lo_is_up(&pod_ns));
    network::remove_netns(&pod_ns).unwrap();
    let no_plugins = CniOptions { plugin_dirs: vec![dir.path().join("no-plugins")], ..Default::default() };
    let e = network::create_pod_netns(&nsdir, "p4", &no_plugins).expect_err("no loopback plugin");
    assert!(e.to_string().contains("loopback"), "{e}");
    assert!(!nsdir.join("p4").exists(), "netns file left by a failed create_pod_netns");

    // pin_netns: a holder process's netns outlives the holder.
    let mut holder = Command::new("unshare")
        .args(["--net", "sleep", "30"])
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare");
    let holder_ns = PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
    common::wait_for("holder netns", Duration::from_secs(10), || network::is_netns(&holder_ns) && !network::is_own_netns(&holder_ns));
    let pinned = network::pin_netns(&holder_ns, &nsdir, "held");
    let _ = holder.kill();
    let _ = holder.wait();
    let pinned = pinned.expect("pin_netns");
    let _guard_pinned = Guard(pinned.clone());
    assert!(network::is_netns(&pinned) && !network::is_own_netns(&pinned));
    assert!(network::pin_netns(Path::new("/proc/self/ns/net"), &nsdir, "held").is_err(), "pinned over an existing name");
    network::remove_netns(&pinned).unwrap();

    network::remove_netns(&ns).expect("remove");
    assert!(!ns.exists() && !network::is_netns(&ns));
    network::remove_netns(&ns).expect("remove twice");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&dir.path().display().to_string()), "mount left:\n{mounts}");
    assert_eq!(std::fs::read_dir(&nsdir).unwrap().count(), 0);
}

fn hull(args: &[&str]) -> Output {
    run_cmd(Command::new(common::runtime()).args(args), Duration::from_secs(60))
}

#[test]
fn cli_network_add_check_del() {
    let Some(mut net) = TestNet::new(4) else { return };
    if common::is_runc() {
        eprintln!("skipped: `network` is a hull command");
        return;
    }
    net.write_conflist(vec![net.bridge_plugin()]);
    let root = net.dir.path().join("root");
    let root_s = root.to_str().unwrap().to_string();
    let out = hull(&["--root", &root_s, "network", "netns-create", "pod"]);
    assert!(out.status.success(), "{}", show(&out));
    let ns = PathBuf::from(s(&out.stdout).trim());
    assert_eq!(ns, root.join("netns/pod"));
    net.netns = Some(ns.clone());
    assert!(lo_is_up(&ns));

    let record = net.dir.path().join("record.json");
    let (ns_s, conf_s, rec_s) = (ns.to_str().unwrap(), net.conf_dir(), record.to_str().unwrap());
    let conf_s = conf_s.to_str().unwrap();
    let out = hull(&["network", "add", "--netns", ns_s, "--id", &net.id, "--conf-dir", conf_s, "--record", rec_s]);
    let stored: Option<Attachment> = std::fs::read(&record).ok().and_then(|t| serde_json::from_slice(&t).ok());
    if let Some(a) = &stored {
        net.track(a);
    }
    assert!(out.status.success(), "{}", show(&out));
    let result: Value = serde_json::from_slice(&out.stdout).expect("result JSON on stdout");
    let addr = result["ips"][0]["address"].as_str().unwrap().to_string();
    let ip: IpAddr = addr.split('/').next().unwrap().parse().unwrap();
    assert!(ping(None, ip), "host cannot ping {ip}");

    let out = hull(&["network", "check", "--record", rec_s]);
    assert!(out.status.success(), "{}", show(&out));
    let out = hull(&["network", "del", "--record", rec_s]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!record.exists(), "del --record removes the record");
    // DEL again, from flags only.
    let out = hull(&["network", "del", "--netns", ns_s, "--id", &net.id, "--conf-dir", conf_s]);
    assert!(out.status.success(), "{}", show(&out));

    // Errors reach the user: no config, bad port mapping.
    let empty = net.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = hull(&["network", "add", "--netns", ns_s, "--id", &net.id, "--conf-dir", empty.to_str().unwrap()]);
    assert!(!out.status.success() && s(&out.stderr).contains("no CNI network config"), "{}", show(&out));
    let out = hull(&["network", "add", "--netns", ns_s, "--id", &net.id, "--conf-dir", conf_s, "--port-mapping", "80"]);
    assert!(!out.status.success() && s(&out.stderr).contains("invalid port mapping"), "{}", show(&out));

    let out = hull(&["network", "netns-remove", ns_s]);
    assert!(out.status.success(), "{}", show(&out));
    net.netns = None;
    net.finish();
}

#[test]
fn dual_stack_gives_v4_and_v6_addresses() {
    let Some(mut net) = TestNet::new(5) else { return };
    let v6_subnet = format!("fd68:756c:6c00:{:x}::/64", net.octet());
    let routes6 = s(&run_cmd(Command::new("ip").args(["-6", "-o", "route", "show", "table", "all"]), CMD).stdout);
    if routes6.contains(&format!("fd68:756c:6c00:{:x}:", net.octet())) {
        eprintln!("skipped: {v6_subnet} in use");
        return;
    }
    let ns = net.create_netns();
    let mut bridge = net.bridge_plugin();
    bridge["ipam"]["ranges"] = json!([[{"subnet": net.subnet()}], [{"subnet": v6_subnet}]]);
    net.write_conflist(vec![bridge, json!({"type": "portmap", "capabilities": {"portMappings": true}})]);
    let mut att = CniConfig::discover(&net.opts()).unwrap().attachment(&net.id, &ns, "eth0");
    att.port_mappings = vec![PortMapping {
        host_port: free_host_port(std::process::id() + 77),
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
    }];
    net.track(&att);
    let result = match att.add() {
        Ok(r) => r,
        Err(e) if e.to_string().contains("ip6tables") => {
            eprintln!("skipped: no ip6tables nat on this host: {e}");
            return;
        }
        Err(e) => panic!("dual-stack ADD: {e}"),
    };
    net.track(&att);
    let ips = result.pod_ips();
    assert_eq!(ips.len(), 2, "{result:?}");
    assert!(ips[0].is_ipv4() && ips[1].is_ipv6(), "v4 first: {ips:?}");
    assert!(ips[1].to_string().starts_with(&format!("fd68:756c:6c00:{:x}:", net.octet())), "{ips:?}");
    assert!(ping(None, ips[0]), "host cannot ping {}", ips[0]);
    assert!(ping(None, ips[1]), "host cannot ping {}", ips[1]);
    let rules6 = s(&run_cmd(Command::new("ip6tables-save").args(["-t", "nat"]), CMD).stdout);
    assert!(rules6.contains(&net.id), "no ip6tables rules for the v6 address:\n{rules6}");
    att.del().expect("DEL");
    att.del().expect("second DEL");
    net.finish();
}

#[test]
fn del_after_the_netns_is_gone_frees_the_ip() {
    // After a reboot the netns, veth and iptables rules are gone but
    // host-local's reservations (on disk) are not: DEL from the stored
    // record, with the netns missing, must still succeed and free the IP.
    let Some(mut net) = TestNet::new(6) else { return };
    let ns = net.create_netns();
    let mut bridge = net.bridge_plugin();
    bridge["ipMasq"] = json!(false);
    net.write_conflist(vec![bridge, json!({"type": "portmap", "capabilities": {"portMappings": true}})]);
    let mut att = CniConfig::discover(&net.opts()).unwrap().attachment(&net.id, &ns, "eth0");
    net.track(&att);
    att.add().expect("ADD");
    net.track(&att);
    assert_eq!(reserved_ips(&net.ipam_dir().join(&net.net_name)).len(), 1);
    network::remove_netns(&ns).unwrap();
    assert!(!network::is_netns(&ns));
    att.del().expect("DEL without the netns");
    assert!(reserved_ips(&net.ipam_dir().join(&net.net_name)).is_empty(), "IP not freed");
    att.del().expect("second DEL");
    // An empty (unmounted) file where the netns was counts as gone too.
    std::fs::write(&ns, "").unwrap();
    att.del().expect("DEL with a stale netns file");
    std::fs::remove_file(&ns).unwrap();
    net.finish();
}
