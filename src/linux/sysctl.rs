//! linux.sysctl: only namespaced keys, and only when the container has a
//! namespace of its own that scopes them, new or joined by path (what runc
//! allows).
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Result, SysContext};
use crate::oci::config::private_namespace;

const IPC_KEYS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Ok when `key` may be set for this container, else why not.
pub fn check_namespaced(key: &str, spec: &Spec) -> std::result::Result<(), String> {
    if key.contains("..") || key.contains('/') && key.split('/').any(|c| c == "..") {
        return Err("not a valid sysctl name".into());
    }
    let key = key.replace('/', ".");
    if IPC_KEYS.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
        return if private_namespace(spec, LinuxNamespaceType::Ipc) { Ok(()) } else { Err("needs a private IPC namespace".into()) };
    }
    if key.starts_with("net.") {
        return if private_namespace(spec, LinuxNamespaceType::Network) { Ok(()) } else { Err("needs a private network namespace".into()) };
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return if private_namespace(spec, LinuxNamespaceType::Uts) { Ok(()) } else { Err("needs a private UTS namespace".into()) };
    }
    Err("not a namespaced sysctl: setting it would change the host".into())
}

/// Write each sysctl through the container's /proc/sys.
pub fn apply(spec: &Spec) -> Result<()> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).sys_context(|| format!("sysctl {key}={value}"))?;
    }
    Ok(())
}
