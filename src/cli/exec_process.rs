//! The process description for `exec`: from --process, or from the
//! container's own process with the command line's overrides (as runc).
use oci_spec::runtime::{Capability, Process};

use super::args::ExecCmd;
use crate::error::{Error, Result};
use crate::oci::state::StateRoot;

pub fn build(root: &StateRoot, e: &ExecCmd) -> Result<Process> {
    if let Some(path) = &e.process {
        let text = std::fs::read(path).map_err(|err| Error::InvalidArgument(format!("--process {}: {err}", path.display())))?;
        return crate::oci::config::from_slice_naming_path(&text)
            .map_err(|err| Error::InvalidArgument(format!("--process {}: field {}: {}", path.display(), err.path(), err.inner())));
    }
    if e.command.is_empty() {
        return Err(Error::InvalidArgument("exec needs a command (args or --process)".into()));
    }
    let rec = root.load(&e.id)?;
    let mut p = rec.config.process().clone().unwrap_or_default();
    p.set_args(Some(e.command.clone()));
    p.set_terminal(Some(e.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &e.env {
        if !kv.contains('=') {
            return Err(Error::InvalidArgument(format!("--env {kv:?}: expected KEY=VALUE")));
        }
        let key = kv.split('=').next().unwrap_or("");
        env.retain(|old| old.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &e.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &e.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        let parse = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| Error::InvalidArgument(format!("--user {u:?}: expected UID[:GID] numbers")))
        };
        let mut user = p.user().clone();
        user.set_uid(parse(uid)?);
        if let Some(g) = gid {
            user.set_gid(parse(g)?);
        }
        p.set_user(user);
    }
    if !e.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(e.additional_gids.clone()));
        p.set_user(user);
    }
    if !e.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &e.cap {
            let full = if name.to_ascii_uppercase().starts_with("CAP_") {
                name.to_ascii_uppercase()
            } else {
                format!("CAP_{}", name.to_ascii_uppercase())
            };
            let cap: Capability = serde_json::from_value(serde_json::Value::String(full.clone()))
                .map_err(|_| Error::InvalidArgument(format!("--cap {name:?}: unknown capability")))?;
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = set.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
            caps.set_inheritable(add(caps.inheritable()));
        }
        p.set_capabilities(Some(caps));
    }
    if e.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &e.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &e.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    Ok(p)
}
