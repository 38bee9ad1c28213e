//! Sandboxes: holder, pinned netns with CNI, pod cgroup, etc files; stop
//! and remove, both idempotent. Teardown acts on what the record lists.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::config::{NamespaceMode, SandboxConfig, SecurityProfile};
use super::error::{ErrorKind, Result, RuntimeError};
use super::holder::{self, HolderSpec};
use super::id::{ContainerId, SandboxId};
use super::names::{sandbox_key, Kind};
use super::record::{self, SandboxPhase, SandboxRecord};
use super::status::{EventKind, SandboxFilter, SandboxState, SandboxStatus};
use super::Runtime;

fn io_err(what: String, e: std::io::Error) -> RuntimeError {
    RuntimeError::with_source(ErrorKind::Internal, what, e)
}

/// A name or namespace as the kubelet sends them: non-empty, no `/`, no
/// NUL, at most 253 bytes (they name directories and index keys).
pub fn check_name(field: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 253 || v.contains('/') || v.contains('\0') || v == "." || v == ".." {
        let shown: String = v.chars().take(64).collect();
        return Err(RuntimeError::invalid(format!("{field} {shown:?}: must be 1 to 253 bytes without '/'")));
    }
    Ok(())
}

/// Refuse what a sandbox cannot be, by field name.
pub fn validate(c: &SandboxConfig) -> Result<HolderSpec> {
    check_name("metadata.name", &c.metadata.name)?;
    check_name("metadata.namespace", &c.metadata.namespace)?;
    let ns = &c.security_context.namespace_options;
    let pod_or_node = |field: &str, m: NamespaceMode| match m {
        NamespaceMode::Pod => Ok(true),
        NamespaceMode::Node => Ok(false),
        other => {
            Err(RuntimeError::invalid(format!("security_context.namespace_options.{field}: {other:?} is not a sandbox mode (POD or NODE)")))
        }
    };
    let network = pod_or_node("network", ns.network)?;
    let ipc = pod_or_node("ipc", ns.ipc)?;
    let pid = match ns.pid {
        NamespaceMode::Pod => true,
        NamespaceMode::Container | NamespaceMode::Node => false,
        NamespaceMode::Target => return Err(RuntimeError::invalid("security_context.namespace_options.pid: TARGET is a container mode")),
    };
    if !network && !c.port_mappings.is_empty() {
        return Err(RuntimeError::invalid("port_mappings: a host-network sandbox has no ports to map"));
    }
    // `readonly_rootfs` is accepted and has nothing to act on: containerd
    // and CRI-O make the pause container's image rootfs read-only, and
    // hull's holder has no rootfs of its own (it is hull's code, in the
    // host's mount namespace, and writes no file once it has reported).
    // The containers' own rootfs follow their own `readonly_rootfs`, which
    // the kubelet sets per container.
    let hostname = if c.hostname.is_empty() { c.metadata.name.clone() } else { c.hostname.clone() };
    if network && (hostname.len() > 64 || hostname.contains('\0')) {
        return Err(RuntimeError::invalid(format!("hostname {hostname:?}: at most 64 bytes")));
    }
    let spec = HolderSpec {
        network,
        uts: network,
        ipc,
        pid,
        hostname: network.then_some(hostname),
        sysctls: c.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        // As for a container (`spec::seccomp`): a privileged sandbox runs
        // unconfined unless a profile file is named.
        seccomp_default: c.security_context.seccomp == SecurityProfile::RuntimeDefault && !c.security_context.privileged,
        seccomp_file: None,
        uid: c.security_context.run_as_user,
        gid: c.security_context.run_as_group,
        groups: c.security_context.supplemental_groups.clone(),
        cgroups: Vec::new(),
    };
    for (k, v) in &c.sysctls {
        if v.contains('\0') || v.contains('\n') {
            return Err(RuntimeError::invalid(format!("sysctls[{k}]: bad value {v:?}")));
        }
        spec.check_sysctl(k).map_err(|why| RuntimeError::invalid(format!("sysctls[{k}]: {why}")))?;
    }
    for (field, v) in [("run_as_user", c.security_context.run_as_user), ("run_as_group", c.security_context.run_as_group)] {
        if let Some(v) = v {
            u32::try_from(v).map_err(|_| RuntimeError::invalid(format!("security_context.{field}: {v} is not a valid id")))?;
        }
    }
    for g in &c.security_context.supplemental_groups {
        u32::try_from(*g).map_err(|_| RuntimeError::invalid(format!("security_context.supplemental_groups: {g} is not a valid id")))?;
    }
    if let Some(parent) = &c.cgroup_parent {
        if !parent.starts_with('/') || parent.split('/').any(|s| s == "..") || parent == "/" {
            return Err(RuntimeError::invalid(format!("cgroup_parent {parent:?}: an absolute cgroupfs path below the root, without ..")));
        }
    }
    Ok(spec)
}

/// The sandbox's Localhost seccomp profile, read (bounded) and checked to
/// compile before anything is made; the holder loads a copy of it.
pub fn holder_seccomp(c: &SandboxConfig) -> Result<Option<oci_spec::runtime::LinuxSeccomp>> {
    let SecurityProfile::Localhost(path) = &c.security_context.seccomp else {
        return Ok(None);
    };
    let field = "security_context.seccomp Localhost";
    let profile = super::spec::read_seccomp_profile(path).map_err(|e| RuntimeError::invalid(format!("{field}: {e}")))?;
    use oci_spec::runtime::LinuxSeccompAction::ScmpActNotify;
    if profile.default_action() == ScmpActNotify || profile.syscalls().iter().flatten().any(|r| r.action() == ScmpActNotify) {
        return Err(RuntimeError::invalid(format!(
            "{field}: {}: SCMP_ACT_NOTIFY: the sandbox holder has no seccomp agent",
            path.display()
        )));
    }
    crate::seccomp::compile(&profile).map_err(|e| RuntimeError::invalid(format!("{field}: {}: {e}", path.display())))?;
    Ok(Some(profile))
}

/// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` of the sandbox.
pub fn etc_files(c: &SandboxConfig, ips: &[String], host_network: bool) -> [(&'static str, String); 3] {
    let host = if host_network {
        nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
    } else if c.hostname.is_empty() {
        c.metadata.name.clone()
    } else {
        c.hostname.clone()
    };
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for ip in ips {
        hosts.push_str(&format!("{}\t{host}\n", ip.split('/').next().unwrap_or(ip)));
    }
    for a in &c.host_aliases {
        hosts.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.join(" ")));
    }
    let resolv = match &c.dns {
        Some(d) => {
            let mut s = String::new();
            for n in &d.servers {
                s.push_str(&format!("nameserver {n}\n"));
            }
            if !d.searches.is_empty() {
                s.push_str(&format!("search {}\n", d.searches.join(" ")));
            }
            if !d.options.is_empty() {
                s.push_str(&format!("options {}\n", d.options.join(" ")));
            }
            s
        }
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    [("hosts", hosts), ("hostname", format!("{host}\n")), ("resolv.conf", resolv)]
}

/// Remove a cgroup path's leaf and the parents below the hierarchy roots
/// that are empty, in every hierarchy (what the pod cgroup made).
fn remove_cgroup(cg: &crate::cgroups::Cgroup, parent: &str) {
    // Whatever is still in the pod cgroup itself once its containers are
    // gone is the sandbox's: its holder, also one whose creator died
    // before recording it.
    let _ = cg.signal_all(nix::sys::signal::Signal::SIGKILL);
    // The default parent is shared by every sandbox: the last one out
    // removes it, under the lock creators hold while they make their pod
    // cgroup below it (rmdir of a parent in use fails, and is left). Also
    // the removal itself runs under it, as it removes the parents this
    // sandbox made: a creator that found the parent there must not see
    // it go before its pod cgroup is in it.
    let default_parent = parent.starts_with(DEFAULT_CGROUP_PARENT);
    let _l = default_parent.then(|| cgroup_parent_lock(nix::fcntl::FlockArg::LockExclusive));
    if let Err(e) = cg.remove() {
        log::warn!("{e}");
    }
    if default_parent {
        // (One this sandbox made, remove() has tried already.)
        let made = |p: &Path| cg.created.iter().any(|c| c == p);
        for dir in cg.dirs.values() {
            if let Some(p) = dir.parent().filter(|p| p.ends_with(DEFAULT_CGROUP_PARENT.trim_matches('/')) && !made(p)) {
                let _ = std::fs::remove_dir(p);
            }
        }
    }
}

/// The sandbox's pinned netns, in its run directory.
const NETNS_PIN: &str = "netns";

/// Where sandboxes' cgroups go when the config names no parent.
const DEFAULT_CGROUP_PARENT: &str = "/hull/";

/// A lock on the cgroup mount (the same for every runtime root on the
/// host): shared while a pod cgroup is made below the default parent,
/// exclusive while that parent is removed. None where it cannot be taken
/// (then the parent is only removed when empty, racing as before).
fn cgroup_parent_lock(how: nix::fcntl::FlockArg) -> Option<nix::fcntl::Flock<std::fs::File>> {
    let dir = std::fs::File::open("/sys/fs/cgroup").ok()?;
    nix::fcntl::Flock::lock(dir, how).ok()
}

impl Runtime {
    pub(super) fn sandbox_dir(&self, id: &SandboxId) -> PathBuf {
        self.opts.state_dir.join("sandboxes").join(id.as_str())
    }

    pub(super) fn sandbox_run_dir(&self, id: &SandboxId) -> PathBuf {
        self.opts.run_dir.join("sandboxes").join(id.as_str())
    }

    /// The sandbox's record, its container list with the containers
    /// listed since it was saved (see [`Runtime::list_in_sandbox`]).
    pub(super) fn load_sandbox(&self, id: &SandboxId) -> Result<SandboxRecord> {
        let mut rec: SandboxRecord = record::read(&self.sandbox_dir(id).join("sandbox.json"), &format!("sandbox {id}"))?;
        for c in record::ids_in(&self.listed_dir(id), ContainerId::parse) {
            if !rec.containers.contains(&c) {
                rec.containers.push(c);
            }
        }
        Ok(rec)
    }

    /// Save the record; the listing files of containers it no longer
    /// lists go.
    pub(super) fn save_sandbox(&self, rec: &SandboxRecord) -> Result<()> {
        record::write_atomic(&self.sandbox_dir(&rec.id).join("sandbox.json"), rec)?;
        for c in record::ids_in(&self.listed_dir(&rec.id), ContainerId::parse) {
            if !rec.containers.contains(&c) {
                let _ = std::fs::remove_file(self.listed_dir(&rec.id).join(c.as_str()));
            }
        }
        Ok(())
    }

    /// Where a sandbox's containers are listed between saves of its
    /// record: one empty file per container.
    pub(super) fn listed_dir(&self, id: &SandboxId) -> PathBuf {
        self.sandbox_dir(id).join("listed")
    }

    /// List a new container in its sandbox (the caller holds the
    /// sandbox's lock): an empty file made, not the record rewritten and
    /// synced. A power loss may take the file; the next open lists the
    /// container again from its own record (`relist_containers`), and
    /// an empty file cannot be torn.
    pub(super) fn list_in_sandbox(&self, sandbox: &SandboxId, id: &ContainerId) -> Result<()> {
        let dir = self.listed_dir(sandbox);
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::File::create(dir.join(id.as_str())))
            .map(drop)
            .map_err(|e| io_err(format!("list container {id} in {}", dir.display()), e))
    }

    /// The sandbox's lock and record; None when it is gone.
    fn lock_sandbox(&self, id: &SandboxId) -> Result<Option<(record::ObjectLock, SandboxRecord)>> {
        let Some(lock) = record::unless_gone(record::lock(&self.sandbox_dir(id), &format!("sandbox {id}")))? else {
            return Ok(None);
        };
        Ok(record::unless_gone(self.load_sandbox(id))?.map(|r| (lock, r)))
    }

    fn sandbox_exists(&self, id: &str) -> bool {
        SandboxId::parse(id).is_ok_and(|id| self.sandbox_dir(&id).join("sandbox.json").exists())
    }

    /// Make a sandbox and return its id once it is Ready (holder running,
    /// network attached). On failure nothing of it is left.
    pub fn create_sandbox(&self, config: &SandboxConfig) -> Result<SandboxId> {
        let m = &config.metadata;
        let what = format!("sandbox {}/{}", m.namespace, m.name);
        let hspec = validate(config).map_err(|e| e.context(&what))?;
        let profile = holder_seccomp(config).map_err(|e| e.context(&what))?;
        let id = SandboxId::generate()?;
        let dir = self.sandbox_dir(&id);
        let run = self.sandbox_run_dir(&id);
        // Locked from before the first record: while a creator lives, its
        // Creating record (or its directory without one yet) is not taken
        // for a crash's leftovers (recover).
        let lock = record::create_object_dir(&dir, &what)?;
        if let Err(e) = std::fs::create_dir_all(&run) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(io_err(format!("create {}", run.display()), e));
        }
        let rec = SandboxRecord {
            id: id.clone(),
            config: config.clone(),
            phase: SandboxPhase::Creating,
            created_at: SystemTime::now(),
            holder: None,
            netns: None,
            network: None,
            ips: Vec::new(),
            cgroup_parent: config.cgroup_parent.clone().unwrap_or_else(|| format!("{DEFAULT_CGROUP_PARENT}pod-{}", id.short())),
            cgroup: None,
            holder_cgroup: None,
            log_directory: config.log_directory.clone().unwrap_or_else(|| dir.join("logs")),
            containers: Vec::new(),
        };
        // The record first, then the name: a name always points at a record.
        let key = sandbox_key(&m.namespace, &m.name, m.attempt);
        let reserved = self
            .save_sandbox(&rec)
            .and_then(|()| self.names.reserve(Kind::Sandbox, &key, id.as_str(), |h| self.sandbox_exists(h)));
        if let Err(e) = reserved {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_dir_all(&run);
            return Err(e.context(&what));
        }
        let mut rec = rec;
        match self.set_up_sandbox(&mut rec, &hspec, profile.as_ref()) {
            Ok(()) => {
                rec.phase = SandboxPhase::Ready;
                self.save_sandbox(&rec)?;
                drop(lock);
                self.bus.publish(EventKind::Created, &id, None);
                self.bus.publish(EventKind::Started, &id, None);
                Ok(id)
            }
            Err(e) => {
                self.release_sandbox(&mut rec, true);
                self.names.release(Kind::Sandbox, &key, id.as_str());
                let _ = std::fs::remove_dir_all(&run);
                let _ = std::fs::remove_dir_all(&dir);
                drop(lock);
                Err(e.context(&what))
            }
        }
    }

    fn set_up_sandbox(&self, rec: &mut SandboxRecord, hspec: &HolderSpec, profile: Option<&oci_spec::runtime::LinuxSeccomp>) -> Result<()> {
        let run = self.sandbox_run_dir(&rec.id);
        std::fs::create_dir_all(&rec.log_directory)
            .map_err(|e| io_err(format!("create log directory {}", rec.log_directory.display()), e))?;
        // The pod cgroup, recorded before anything can be placed in it.
        let parent = Path::new(&rec.cgroup_parent);
        let leaf = parent.file_name().and_then(|n| n.to_str()).unwrap_or("pod").to_string();
        let cg = {
            let _l = cgroup_parent_lock(nix::fcntl::FlockArg::LockShared);
            // Planned and recorded before a directory is made: a crash
            // half-way through the hierarchies leaves a record of them all.
            // The plan is the record of what `make` makes: one save.
            let cg = crate::cgroups::Cgroup::plan(Some(parent), &leaf)?;
            rec.cgroup = Some(cg.clone());
            self.save_sandbox(rec)?;
            if let Err(e) = cg.make() {
                rec.cgroup = None;
                return Err(e.into());
            }
            cg
        };
        // The holder's leaf, named by the sandbox id as containerd names
        // the pause container's, next to the containers' cgroups (a scope
        // under a systemd slice with the systemd driver, as theirs).
        let holder_path = crate::cgroups::systemd::child_path(&rec.cgroup_parent, rec.id.as_str(), rec.config.cgroup_scopes);
        // Recorded before it is made, and before the holder joins it: a
        // holder whose creator died before recording its pid is found (and
        // killed) there by the removal.
        let holder_cg = crate::cgroups::Cgroup::plan(Some(Path::new(&holder_path)), rec.id.as_str())?;
        rec.holder_cgroup = Some(holder_cg.clone());
        self.save_sandbox(rec)?;
        holder_cg.make()?;
        if let Some(r) = &rec.config.resources {
            let res = super::spec::oci_resources(r, oci_spec::runtime::LinuxResources::default()).map_err(|e| e.context("resources"))?;
            cg.apply_resources(&res).map_err(|e| RuntimeError::from(e).context("resources"))?;
        }
        // The holder joins its leaf before it makes anything (containerd's
        // pause is in the pod's cgroup too); on v2 the pod cgroup itself
        // holds no process, the containers' controllers are enabled below it.
        let mut hspec = HolderSpec { cgroups: holder_cg.dirs.values().cloned().collect(), ..hspec.clone() };
        if let Some(p) = profile {
            // The holder reads hull's own copy, not the path again (which
            // may have changed since it was checked).
            let file = run.join("holder-seccomp.json");
            let text = serde_json::to_vec(p).map_err(|e| RuntimeError::internal(format!("encode the seccomp profile: {e}")))?;
            record::write_run_bytes(&file, &text)?;
            hspec.seccomp_file = Some(file);
        }
        let h = holder::spawn(&self.opts.hull, &hspec)?;
        rec.holder = Some(h);
        self.save_sandbox(rec)?;
        if hspec.network {
            self.attach_network(rec, &h)?;
        }
        let etc = run.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| io_err(format!("create {}", etc.display()), e))?;
        for (file, text) in etc_files(&rec.config, &rec.ips, !hspec.network) {
            std::fs::write(etc.join(file), text).map_err(|e| io_err(format!("write {file}"), e))?;
        }
        Ok(())
    }

    /// Pin the holder's netns and CNI ADD it. Without any CNI config the
    /// sandbox has only its loopback (a port mapping is then an error).
    fn attach_network(&self, rec: &mut SandboxRecord, h: &super::record::HolderRecord) -> Result<()> {
        let config = match crate::network::CniConfig::discover(&self.opts.cni) {
            Ok(c) => c,
            Err(crate::network::NetworkError::NoConfig { dir }) => {
                if let Some(p) = rec.config.port_mappings.first() {
                    return Err(RuntimeError::invalid(format!(
                        "port_mappings: host port {} needs a CNI network with the portmap plugin, and {} has no network config",
                        p.host_port,
                        dir.display()
                    )));
                }
                log::warn!("sandbox {}: no CNI network config in {}: only loopback", rec.id, dir.display());
                return Ok(());
            }
            Err(e) => return Err(RuntimeError::from(e).context("network")),
        };
        if let Some(p) = rec.config.port_mappings.first().filter(|_| !config.maps_ports()) {
            return Err(RuntimeError::invalid(format!(
                "port_mappings: host port {}: the CNI network {:?} ({}) has no plugin with the portMappings capability (portmap): the port would not be mapped",
                p.host_port,
                config.list.name,
                config.source.display()
            )));
        }
        // CNI gets a pinned path, not /proc/<holder>/ns/net: should the
        // holder die and its pid be reused, a DEL must not reach someone
        // else's netns.
        let run = self.sandbox_run_dir(&rec.id);
        // Named in the record before the bind: a crash right after it
        // still leaves the pin listed for removal (which is idempotent).
        rec.netns = Some(run.join(NETNS_PIN));
        self.save_sandbox(rec)?;
        let netns = crate::network::netns::pin_netns(Path::new(&holder::ns_path(h, "net")), &run, NETNS_PIN)
            .map_err(|e| RuntimeError::from(e).context("network"))?;
        rec.netns = Some(netns.clone());
        let mut att = config.attachment(rec.id.as_str(), &netns, "eth0");
        att.port_mappings = rec
            .config
            .port_mappings
            .iter()
            .map(|p| crate::network::PortMapping {
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: p.protocol.as_cni().into(),
                host_ip: p.host_ip.clone(),
            })
            .collect();
        let m = &rec.config.metadata;
        att.args = vec![
            ("K8S_POD_NAMESPACE".into(), m.namespace.clone()),
            ("K8S_POD_NAME".into(), m.name.clone()),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), rec.id.to_string()),
            ("K8S_POD_UID".into(), m.uid.clone()),
        ];
        // Recorded before ADD: a crash in between still leaves enough for DEL.
        rec.network = Some(att.clone());
        self.save_sandbox(rec)?;
        let result = att.add().map_err(|e| RuntimeError::from(e).context(format!("network (CNI {})", att.config.name)))?;
        rec.ips = result.pod_ips().iter().map(|ip| ip.to_string()).collect();
        rec.network = Some(att);
        self.save_sandbox(rec)
    }

    /// Network, netns pin and holder: what a stopped sandbox no longer has.
    fn release_sandbox(&self, rec: &mut SandboxRecord, remove_cgroup_too: bool) {
        if let Some(att) = rec.network.take() {
            if let Err(e) = att.del() {
                log::warn!("sandbox {}: CNI DEL: {e}", rec.id);
            }
        }
        if let Some(ns) = rec.netns.take() {
            if let Err(e) = crate::network::netns::remove_netns(&ns) {
                log::warn!("sandbox {}: {e}", rec.id);
            }
        }
        if let Some(h) = rec.holder.take() {
            holder::stop(&h);
        }
        if let Some(cg) = rec.holder_cgroup.take() {
            // Also a holder whose pid was never recorded.
            let _ = cg.signal_all(nix::sys::signal::Signal::SIGKILL);
            if let Err(e) = cg.remove() {
                log::warn!("sandbox {}: holder cgroup: {e}", rec.id);
            }
        }
        rec.ips.clear();
        if remove_cgroup_too {
            if let Some(cg) = rec.cgroup.take() {
                remove_cgroup(&cg, &rec.cgroup_parent);
            }
        }
    }

    /// After a crash: undo a sandbox whose creator died before it was Ready
    /// (its record lists what was made). Called by [`Runtime::open`].
    pub(super) fn recover_sandbox(&self, id: &SandboxId) {
        let dir = self.sandbox_dir(id);
        let Ok(Some(lock)) = record::try_lock(&dir, "sandbox") else {
            return;
        };
        let what = format!("sandbox {id}");
        let Some(mut rec) = record::record_or_remove(self.load_sandbox(id), &dir, &self.sandbox_run_dir(id), &what) else {
            return;
        };
        if rec.phase != SandboxPhase::Creating {
            return;
        }
        log::warn!("sandbox {id}: its creation was interrupted; removing what it made");
        for c in rec.containers.clone() {
            let _ = self.remove_container_locked(&c);
        }
        self.release_sandbox(&mut rec, true);
        let m = &rec.config.metadata;
        self.names.release(Kind::Sandbox, &sandbox_key(&m.namespace, &m.name, m.attempt), id.as_str());
        let _ = record::remove_object_dir(&self.sandbox_run_dir(id));
        let _ = record::remove_object_dir(&dir);
        drop(lock);
    }

    /// Stop the sandbox's containers (each with `timeout` before SIGKILL),
    /// give its network back (CNI DEL) and stop its holder. The record
    /// stays (NotReady) until [`Runtime::remove_sandbox`]. Idempotent: a
    /// sandbox that is gone or already stopped is success.
    pub fn stop_sandbox(&self, id: &SandboxId, timeout: Duration) -> Result<()> {
        let Some((_lock, mut rec)) = self.lock_sandbox(id)? else {
            return Ok(());
        };
        self.stop_containers(&rec.containers, timeout)?;
        let was_stopped = rec.phase == SandboxPhase::Stopped;
        let before = serde_json::to_vec(&rec).ok();
        // The pod cgroup stays until removal (its containers' records do).
        self.release_sandbox(&mut rec, false);
        rec.phase = SandboxPhase::Stopped;
        self.prune_containers(&mut rec);
        // A second stop (RemovePodSandbox stops first) that changed
        // nothing writes nothing: a synced write less.
        if before.is_none() || serde_json::to_vec(&rec).ok() != before {
            self.save_sandbox(&rec)?;
        }
        if !was_stopped {
            self.bus.publish(EventKind::Stopped, id, None);
        }
        Ok(())
    }

    /// Stop (if needed) and remove the sandbox, its containers and
    /// everything they made. Idempotent.
    pub fn remove_sandbox(&self, id: &SandboxId) -> Result<()> {
        self.stop_sandbox(id, Duration::ZERO)?;
        let dir = self.sandbox_dir(id);
        let what = format!("sandbox {id}");
        let Some((lock, mut rec)) = self.lock_sandbox(id)? else {
            return Ok(());
        };
        let mut first_error = None;
        for c in rec.containers.clone() {
            match self.remove_container_locked(&c) {
                Ok(()) => rec.containers.retain(|x| *x != c),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            self.save_sandbox(&rec)?;
            return Err(e.context(&what));
        }
        self.release_sandbox(&mut rec, true);
        let m = &rec.config.metadata;
        self.names.release(Kind::Sandbox, &sandbox_key(&m.namespace, &m.name, m.attempt), id.as_str());
        self.reaper.remove(&[self.sandbox_run_dir(id), dir], &[]);
        drop(lock);
        self.bus.publish(EventKind::Deleted, id, None);
        Ok(())
    }

    pub fn sandbox_status(&self, id: &SandboxId) -> Result<SandboxStatus> {
        Ok(self.status_of(&self.load_sandbox(id)?))
    }

    fn status_of(&self, rec: &SandboxRecord) -> SandboxStatus {
        let ready = rec.phase == SandboxPhase::Ready && rec.holder.is_some_and(|h| h.alive());
        SandboxStatus {
            id: rec.id.clone(),
            metadata: rec.config.metadata.clone(),
            state: if ready { SandboxState::Ready } else { SandboxState::NotReady },
            created_at: rec.created_at,
            ips: rec.ips.iter().map(|ip| ip.split('/').next().unwrap_or(ip).to_string()).collect(),
            namespace_options: rec.config.security_context.namespace_options.clone(),
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
            holder_pid: rec.holder.filter(|h| h.alive()).map(|h| h.pid),
            cgroup_parent: rec.cgroup_parent.clone(),
            log_directory: rec.log_directory.clone(),
        }
    }

    pub fn list_sandboxes(&self, filter: &SandboxFilter) -> Result<Vec<SandboxStatus>> {
        let mut out = Vec::new();
        for id in record::ids_in(&self.opts.state_dir.join("sandboxes"), SandboxId::parse) {
            if filter.id.as_ref().is_some_and(|f| *f != id) {
                continue;
            }
            let Ok(rec) = self.load_sandbox(&id) else {
                continue;
            };
            let st = self.status_of(&rec);
            if filter.state.is_some_and(|s| s != st.state) {
                continue;
            }
            if !record::labels_match(&filter.label_selector, &st.labels) {
                continue;
            }
            out.push(st);
        }
        Ok(out)
    }

    /// The id holding a sandbox name, if any.
    pub fn find_sandbox(&self, namespace: &str, name: &str, attempt: u32) -> Result<Option<SandboxId>> {
        Ok(self
            .names
            .lookup(Kind::Sandbox, &sandbox_key(namespace, name, attempt))
            .and_then(|id| SandboxId::parse(&id).ok())
            .filter(|id| self.sandbox_exists(id.as_str())))
    }

    /// The pod cgroup's usage.
    pub fn sandbox_stats(&self, id: &SandboxId) -> Result<super::ContainerStats> {
        let rec = self.load_sandbox(id)?;
        let cg = rec.cgroup.ok_or_else(|| RuntimeError::precondition(format!("sandbox {id} has no cgroup")))?;
        Ok(super::container::stats_of(id.as_str(), &cg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::{HostAlias, PortMapping, SandboxMetadata};

    fn cfg() -> SandboxConfig {
        SandboxConfig {
            metadata: SandboxMetadata { name: "web".into(), namespace: "default".into(), uid: "u1".into(), attempt: 0 },
            ..Default::default()
        }
    }

    #[test]
    fn validation_names_the_field() {
        let spec = validate(&cfg()).unwrap();
        assert!(spec.network && spec.ipc && spec.uts && !spec.pid);
        assert_eq!(spec.hostname.as_deref(), Some("web"));
        let mut c = cfg();
        c.metadata.name = "a/b".into();
        assert!(validate(&c).unwrap_err().to_string().contains("metadata.name"));
        let mut c = cfg();
        c.sysctls.insert("kernel.panic".into(), "1".into());
        let e = validate(&c).unwrap_err();
        assert!(e.to_string().contains("sysctls[kernel.panic]"), "{e}");
        let mut c = cfg();
        c.security_context.namespace_options.network = NamespaceMode::Node;
        c.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        assert!(validate(&c).unwrap_err().to_string().contains("network"));
        let mut c = cfg();
        c.security_context.namespace_options.network = NamespaceMode::Node;
        c.port_mappings.push(PortMapping { host_port: 80, container_port: 80, ..Default::default() });
        assert!(validate(&c).unwrap_err().to_string().contains("port_mappings"));
        let mut c = cfg();
        c.security_context.namespace_options.ipc = NamespaceMode::Container;
        assert_eq!(validate(&c).unwrap_err().kind(), ErrorKind::InvalidArgument);
        let mut c = cfg();
        c.cgroup_parent = Some("rel/x".into());
        assert!(validate(&c).unwrap_err().to_string().contains("cgroup_parent"));
        let mut c = cfg();
        c.security_context.run_as_user = Some(-5);
        assert!(validate(&c).is_err());
    }

    #[test]
    fn etc_files_have_the_pod_ip_aliases_and_dns() {
        let mut c = cfg();
        c.hostname = "h1".into();
        c.host_aliases.push(HostAlias { ip: "10.1.1.1".into(), hostnames: vec!["a".into(), "b".into()] });
        c.dns = Some(super::super::config::DnsConfig {
            servers: vec!["1.1.1.1".into()],
            searches: vec!["x.local".into()],
            options: vec!["ndots:5".into()],
        });
        let [(_, hosts), (_, hostname), (_, resolv)] = etc_files(&c, &["10.0.0.5/24".into()], false);
        assert!(hosts.contains("10.0.0.5\th1\n") && hosts.contains("10.1.1.1\ta b\n"), "{hosts}");
        assert_eq!(hostname, "h1\n");
        assert_eq!(resolv, "nameserver 1.1.1.1\nsearch x.local\noptions ndots:5\n");
    }
}
