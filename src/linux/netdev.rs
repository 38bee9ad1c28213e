//! linux.netDevices (runtime-spec 1.3): host network interfaces moved into
//! the container's network namespace, optionally renamed, and moved back,
//! under their host names, when the container is deleted.
//!
//! The kernel drops an interface's addresses when it changes namespace;
//! as youki and crun do, hull keeps the global ones and adds them back on
//! the other side, and brings the interface up if it was up. The work is
//! done with iproute2's `ip` (and util-linux's `nsenter` to run it in the
//! container's namespace), both installed by `make setup`.
//!
//! A physical interface whose namespace dies goes back to the host by
//! itself, but a virtual one (veth, dummy, macvlan...) is destroyed with
//! it: so the container's namespace is pinned by a bind mount in its state
//! directory until `delete` has moved the interfaces out.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxNamespaceType, LinuxNetDevice, Spec};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SysContext};

/// One interface hull moved into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub host_name: String,
    pub container_name: String,
    /// `ADDR/PREFIXLEN` of its global addresses.
    pub addresses: Vec<String>,
    pub up: bool,
}

/// The pin of the container's network namespace in its state directory.
pub const NETNS_PIN: &str = "netns";

fn valid_ifname(name: &str) -> bool {
    !name.is_empty() && name.len() < 16 && name != "." && name != ".." && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// Check linux.netDevices before anything is created.
pub fn check(spec: &Spec) -> Result<()> {
    let Some(devices) = spec.linux().as_ref().and_then(|l| l.net_devices().as_ref()) else {
        return Ok(());
    };
    if devices.is_empty() {
        return Ok(());
    }
    if !crate::oci::config::private_namespace(spec, LinuxNamespaceType::Network) {
        return Err(Error::Config("linux.netDevices: needs a network namespace of the container's own".into()));
    }
    let mut inside = std::collections::HashSet::new();
    for (host, dev) in sorted(devices) {
        let field = format!("linux.netDevices.{host}");
        if !valid_ifname(host) {
            return Err(Error::Config(format!("{field}: {host:?} is not a valid interface name")));
        }
        let name = container_name(host, dev);
        if !valid_ifname(&name) {
            return Err(Error::Config(format!("{field}.name: {name:?} is not a valid interface name")));
        }
        if !inside.insert(name.clone()) {
            return Err(Error::Config(format!("{field}.name: {name:?} is given to two interfaces")));
        }
        if !Path::new("/sys/class/net").join(host).exists() {
            return Err(Error::Config(format!("{field}: the host has no interface {host:?}")));
        }
    }
    Ok(())
}

fn sorted(devices: &HashMap<String, LinuxNetDevice>) -> Vec<(&String, &LinuxNetDevice)> {
    let mut v: Vec<_> = devices.iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

fn container_name(host: &str, dev: &LinuxNetDevice) -> String {
    dev.name().as_deref().filter(|n| !n.is_empty()).unwrap_or(host).to_string()
}

/// Run `ip ARGS`, in the network namespace at `netns` if given.
fn ip(netns: Option<&Path>, args: &[&str]) -> Result<String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    let out = cmd.args(args).stdin(Stdio::null()).output().sys_context(|| format!("run ip {}", args.join(" ")))?;
    if !out.status.success() {
        return Err(Error::Init(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The global addresses of an interface and whether it is up.
fn addresses(netns: Option<&Path>, name: &str) -> Result<(Vec<String>, bool)> {
    let text = ip(netns, &["-j", "addr", "show", "dev", name])?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Init(format!("ip -j addr show: {e}")))?;
    let link = v.get(0).ok_or_else(|| Error::Init(format!("no interface {name}")))?;
    let up = link["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "UP"));
    let addrs = link["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["scope"] == "global")
        .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"].as_u64()?)))
        .collect();
    Ok((addrs, up))
}

/// Move one interface into the namespace of process `to_pid` (or the one
/// pinned at `from` back to `to_pid`'s), renamed, with its addresses.
fn move_one(from: Option<&Path>, name: &str, to_pid: i32, to: Option<&Path>, new_name: &str, addrs: &[String], up: bool) -> Result<()> {
    let pid = to_pid.to_string();
    // Move and rename in one request: a clash with an existing name then
    // fails the move instead of leaving a half-renamed interface.
    ip(from, &["link", "set", "dev", name, "netns", &pid, "name", new_name])?;
    for a in addrs {
        ip(to, &["addr", "add", a, "dev", new_name])?;
    }
    if up {
        ip(to, &["link", "set", "dev", new_name, "up"])?;
    }
    Ok(())
}

/// Move the configured interfaces into the network namespace of the
/// container's init (`pid`), after pinning it in `state_dir`. Returns what
/// was moved; on error, whatever was already moved is moved back.
pub fn move_in(spec: &Spec, pid: i32, state_dir: &Path) -> Result<Vec<Moved>> {
    let Some(devices) = spec.linux().as_ref().and_then(|l| l.net_devices().as_ref()).filter(|d| !d.is_empty()) else {
        return Ok(Vec::new());
    };
    let pin = pin_netns(pid, state_dir)?;
    let mut moved = Vec::new();
    for (host, dev) in sorted(devices) {
        let field = format!("linux.netDevices.{host}");
        let step = (|| -> Result<Moved> {
            let (addrs, up) = addresses(None, host)?;
            let name = container_name(host, dev);
            move_one(None, host, pid, Some(&pin), &name, &addrs, up)?;
            Ok(Moved { host_name: host.clone(), container_name: name, addresses: addrs, up })
        })();
        match step {
            Ok(m) => moved.push(m),
            Err(e) => {
                move_out(&moved, state_dir);
                return Err(e.with_context(field));
            }
        }
    }
    Ok(moved)
}

fn pin_netns(pid: i32, state_dir: &Path) -> Result<PathBuf> {
    let pin = state_dir.join(NETNS_PIN);
    std::fs::File::create(&pin).sys_context(|| format!("create {}", pin.display()))?;
    let ns = format!("/proc/{pid}/ns/net");
    mount(Some(ns.as_str()), &pin, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .sys_context(|| format!("pin the container's network namespace at {}", pin.display()))?;
    Ok(pin)
}

/// Move the interfaces back to the host's namespace (hull's own) under
/// their host names, with their addresses, then drop the pin. Failures are
/// logged: delete goes on (the interface is then where the kernel leaves it).
pub fn move_out(moved: &[Moved], state_dir: &Path) {
    let pin = state_dir.join(NETNS_PIN);
    if !pin.exists() {
        return;
    }
    let ours = std::process::id() as i32;
    for m in moved {
        if let Err(e) = move_one(Some(&pin), &m.container_name, ours, None, &m.host_name, &m.addresses, m.up) {
            log::warn!("linux.netDevices.{}: moving it back to the host: {e}", m.host_name);
        }
    }
    if let Err(e) = umount2(&pin, MntFlags::MNT_DETACH) {
        log::warn!("unpin network namespace {}: {e}", pin.display());
    }
    let _ = std::fs::remove_file(&pin);
}
