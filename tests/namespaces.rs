//! linux.namespaces: new namespaces, joining existing ones by path, sysctl
//! inside them, user namespace mappings.

mod common;

use common::*;
use serde_json::json;
use std::process::Command;

const ALL: [&str; 6] = ["pid", "net", "ipc", "uts", "mnt", "cgroup"];

/// Map /proc/self/ns file names to config namespace types.
fn config_type(ns: &str) -> &'static str {
    match ns {
        "pid" => "pid",
        "net" => "network",
        "ipc" => "ipc",
        "uts" => "uts",
        "mnt" => "mount",
        "cgroup" => "cgroup",
        "user" => "user",
        _ => panic!("unknown ns {}", ns),
    }
}

fn container_ns_links(env: &mut TestEnv) -> Vec<(String, String)> {
    env.sh("for n in pid net ipc uts mnt cgroup user; do echo $n $(readlink /proc/self/ns/$n); done");
    env.output_ok()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect()
}

#[test]
fn new_namespaces_differ_from_host() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("ns-new");
    for ns in ALL {
        env.set_namespace(config_type(ns), None);
    }
    let links = container_ns_links(&mut env);
    for (ns, link) in &links {
        let host = ns_link("self", ns);
        assert!(link.starts_with(&format!("{}:[", ns)), "{} -> {}", ns, link);
        if ns == "user" {
            assert_eq!(link, &host, "no user namespace was asked for");
        } else {
            assert_ne!(link, &host, "{} namespace should be new", ns);
        }
    }
}

#[test]
fn omitted_namespaces_are_shared_with_host() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("ns-shared");
    env.drop_namespace("network").drop_namespace("ipc").drop_namespace("uts");
    // a hostname needs a private UTS namespace
    env.config.as_object_mut().unwrap().remove("hostname");
    let own_cgroup_ns = env.config["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n["type"] == "cgroup");
    let links = container_ns_links(&mut env);
    for (ns, link) in &links {
        let host = ns_link("self", ns);
        match ns.as_str() {
            "cgroup" if own_cgroup_ns => assert_ne!(link, &host, "{}", ns),
            "net" | "ipc" | "uts" | "user" | "cgroup" => assert_eq!(link, &host, "{}", ns),
            _ => assert_ne!(link, &host, "{}", ns),
        }
    }
}

/// A named network namespace made with `ip netns add`, deleted on drop.
struct NetNs(String);
impl NetNs {
    fn new(tag: &str) -> NetNs {
        let name = format!("hull-{}-{}", tag, std::process::id());
        let o = run_cmd(Command::new("ip").args(["netns", "add", &name]), CMD_TIMEOUT);
        assert_ok(&o);
        NetNs(name)
    }
    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
}
impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = run_cmd(Command::new("ip").args(["netns", "del", &self.0]), CMD_TIMEOUT);
    }
}

#[test]
fn join_network_namespace_by_path() {
    if !require_root() {
        return;
    }
    let netns = NetNs::new("join");
    let ino = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(netns.path()).unwrap().ino()
    };
    let mut env = TestEnv::new("ns-join");
    env.set_namespace("network", Some(&netns.path()));
    env.args(&["readlink", "/proc/self/ns/net"]);
    assert_eq!(env.output_ok(), format!("net:[{}]\n", ino));
    drop(env);
}

#[test]
fn new_network_namespace_has_only_loopback() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("ns-net-lo");
    env.sh("ls /sys/class/net");
    assert_eq!(env.output_ok(), "lo\n");
}

#[test]
fn sysctl_in_new_network_namespace() {
    if !require_root() {
        return;
    }
    let host_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let want = if host_before.trim() == "1" { "0" } else { "1" };
    let mut env = TestEnv::new("sysctl");
    env.config["linux"]["sysctl"] = json!({
        "net.ipv4.ip_forward": want,
        "kernel.shmmax": "12345678",
        "net/ipv4/conf/all/forwarding": want
    });
    env.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax /proc/sys/net/ipv4/conf/all/forwarding");
    assert_eq!(env.output_ok(), format!("{}\n12345678\n{}\n", want, want));
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(), host_before);
}

#[test]
fn sysctl_for_host_namespace_is_refused() {
    if !require_root() {
        return;
    }
    // net.* sysctls need a private network namespace
    let mut env = TestEnv::new("sysctl-hostnet");
    env.drop_namespace("network");
    env.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    env.args(&["true"]);
    let o = env.create();
    assert_fails_mentioning(&o, &["net.ipv4.ip_forward"]);
    assert_no_leftovers(&env);
}

#[test]
fn hostname_without_uts_namespace_is_refused() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("hostname-no-uts");
    env.drop_namespace("uts");
    env.config["hostname"] = json!("nope");
    env.args(&["true"]);
    let o = env.create();
    // runc: "unable to set hostname without a private UTS namespace"
    assert_fails_mentioning(&o, &["hostname"]);
    assert_no_leftovers(&env);
}

#[test]
fn join_pid_namespace_of_other_container() {
    if !require_root() {
        return;
    }
    let mut a = TestEnv::new("ns-pid-a");
    a.args(&["sleep", "1234"]);
    a.start_running();
    let a_pid = a.pid();

    let mut b = TestEnv::new("ns-pid-b");
    b.set_namespace("pid", Some(&format!("/proc/{}/ns/pid", a_pid)));
    b.sh("ps -o pid,args");
    let out = b.output_ok();
    assert!(out.lines().any(|l| l.trim() == "1 sleep 1234"), "container b should see a's init as pid 1:\n{}", out);
}

#[test]
fn join_ipc_and_uts_namespaces_of_other_container() {
    if !require_root() {
        return;
    }
    let mut a = TestEnv::new("ns-uts-a");
    a.config["hostname"] = json!("container-a");
    a.args(&["sleep", "1000"]);
    a.start_running();
    let a_pid = a.pid();

    let mut b = TestEnv::new("ns-uts-b");
    b.config.as_object_mut().unwrap().remove("hostname");
    b.set_namespace("uts", Some(&format!("/proc/{}/ns/uts", a_pid)));
    b.set_namespace("ipc", Some(&format!("/proc/{}/ns/ipc", a_pid)));
    b.sh("hostname; readlink /proc/self/ns/ipc");
    let out = b.output_ok();
    assert_eq!(out, format!("container-a\n{}\n", ns_link(&a_pid.to_string(), "ipc")));
}

#[test]
fn user_namespace_with_mappings() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("userns");
    env.set_namespace("user", None);
    env.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    env.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    // sysfs/cgroup cannot be mounted fresh in a user namespace without a
    // netns/cgroupns it owns; keep the test to what matters
    env.config["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/sys/fs/cgroup");
    env.sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; readlink /proc/self/ns/user");
    let o = env.run_fg();
    assert_ok(&o);
    let out = s(&o.stdout);
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], vec!["0", "200000", "65536"], "{}", out);
    assert_eq!(lines[1], vec!["0", "200000", "65536"], "{}", out);
    assert_eq!(lines[2], vec!["0"], "{}", out);
    assert_ne!(lines[3][0], ns_link("self", "user"));
}
