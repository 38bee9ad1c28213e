//! `hull pod ...`: the pod runner's commands.
use std::io::Write;
use std::time::Duration;

use super::args::PodCmd;
use crate::error::{Error, Result};
use crate::pod::{
    self,
    store::{ContainerState, PodRecord},
    PodRoots,
};
use std::path::Path;

pub fn dispatch(root: &Path, state_dir: Option<&Path>, image_root: &Path, cmd: &PodCmd) -> Result<i32> {
    let roots = &PodRoots::open(root, state_dir)?;
    let cni = match cmd {
        PodCmd::Run { cni_conf_dir, cni_bin_dirs, .. } => {
            crate::network::CniOptions { conf_dir: cni_conf_dir.clone(), plugin_dirs: cni_bin_dirs.clone(), ..Default::default() }
        }
        _ => Default::default(),
    };
    let rt = pod::open_runtime(roots, image_root, cni)?;
    match cmd {
        PodCmd::Run { file, namespace, backoff_base_ms, wait, .. } => {
            let rec = pod::run(
                roots,
                &rt,
                &pod::RunOptions {
                    manifest: file.clone(),
                    backoff_base: Duration::from_millis(*backoff_base_ms),
                    wait: Duration::from_secs(*wait),
                    namespace: namespace.clone(),
                },
            )?;
            let view = pod::view(&rt, rec);
            let ips = if view.ips.is_empty() { "no IP".to_string() } else { view.ips.join(", ") };
            let rec = &view.record;
            println!("pod/{} {} (uid {}, {ips})", rec.name, rec.phase, rec.uid);
            print_containers(rec);
            let failed: Vec<_> = rec.containers.iter().filter(|c| pod::start_failed(c)).collect();
            for c in &failed {
                eprintln!("hull: container {} did not start: {}: {}", c.name, c.reason, c.message);
            }
            Ok(if failed.is_empty() { 0 } else { 1 })
        }
        PodCmd::Ls { namespace } => {
            let pods = pod::list(roots, &rt, namespace);
            println!("{:<24} {:<10} {:<7} {:<9} CREATED", "NAME", "PHASE", "READY", "RESTARTS");
            for p in pods {
                let app: Vec<_> = p.containers.iter().filter(|c| !c.init).collect();
                // Ready as the kubelet says it: running and its readiness
                // probe (if any) passing.
                let ready = app.iter().filter(|c| c.state == ContainerState::Running && c.ready).count();
                let restarts: u32 = p.containers.iter().map(|c| c.restart_count).sum();
                // The reason when the kubelet gives one (Evicted), as kubectl's STATUS.
                let phase = if p.reason.is_empty() { &p.phase } else { &p.reason };
                println!("{:<24} {:<10} {:<7} {:<9} {}", p.name, phase, format!("{ready}/{}", app.len()), restarts, p.created);
            }
            Ok(0)
        }
        PodCmd::Ps { name, namespace, output } => {
            let rec = pod::status(roots, &rt, &key(namespace, name)?)?;
            if output == "json" {
                let view = pod::view(&rt, rec);
                println!("{}", serde_json::to_string_pretty(&view).map_err(|e| Error::InvalidState(e.to_string()))?);
                return Ok(0);
            }
            println!(
                "pod/{} {}{}{}",
                rec.name,
                rec.phase,
                if rec.reason.is_empty() { String::new() } else { format!(" ({}: {})", rec.reason, rec.message) },
                if pod::supervisor_alive(&rec) || rec.is_final() { "" } else { " (supervisor not running)" }
            );
            print_containers(&rec);
            Ok(0)
        }
        PodCmd::Logs { name, namespace, container, follow } => logs(roots, &rt, &key(namespace, name)?, container.as_deref(), *follow),
        PodCmd::Exec { name, namespace, container, command, stdin, tty } => {
            super::pod_stream::exec(roots, rt, &key(namespace, name)?, container.as_deref(), command, *tty, *stdin)
        }
        PodCmd::Attach { name, namespace, container } => super::pod_stream::attach(roots, rt, &key(namespace, name)?, container.as_deref()),
        PodCmd::PortForward { name, namespace, ports } => super::pod_stream::port_forward(roots, rt, &key(namespace, name)?, ports),
        PodCmd::Stop { name, namespace } => pod::stop(roots, &rt, &key(namespace, name)?).map(|_| 0),
        PodCmd::Rm { name, namespace } => pod::remove(roots, &rt, &key(namespace, name)?).map(|_| 0),
        PodCmd::Supervise { name, backoff_base_ms } => pod::supervise(roots, rt, name, Duration::from_millis(*backoff_base_ms)).map(|_| 0),
    }
}

/// The store key of pod `name` in `namespace` (both checked as names).
fn key(namespace: &str, name: &str) -> Result<String> {
    pod::names::check_label("--namespace", namespace)?;
    pod::names::check_subdomain("pod name", name)?;
    Ok(pod::store::pod_key(namespace, name))
}

fn print_containers(rec: &PodRecord) {
    println!("{:<16} {:<11} {:<17} {:<9} {:<5} {:<6} ID", "CONTAINER", "STATE", "REASON", "RESTARTS", "EXIT", "READY");
    for c in &rec.containers {
        let state = match c.state {
            ContainerState::Waiting => "waiting",
            ContainerState::Running => "running",
            ContainerState::Terminated => "terminated",
        };
        let exit = c.last_exit.as_ref().map_or("-".to_string(), |e| e.exit_code.to_string());
        let name = if c.init { format!("{} (init)", c.name) } else { c.name.clone() };
        println!(
            "{:<16} {:<11} {:<17} {:<9} {:<5} {:<6} {}",
            name,
            state,
            if c.reason.is_empty() { "-" } else { &c.reason },
            c.restart_count,
            exit,
            c.ready,
            c.container_id.as_ref().map_or("-", |id| id.short())
        );
    }
}

fn logs(roots: &PodRoots, rt: &crate::runtime::Runtime, name: &str, container: Option<&str>, follow: bool) -> Result<i32> {
    let mut path = pod::log_path(roots, rt, name, container)?;
    let mut offset = 0u64;
    let mut out = std::io::stdout();
    // A follower sleeps until the record is written, the log grows, an
    // exit record comes (a container ending while no supervisor runs) or
    // the supervisor ends; each watch is in place before what it guards
    // is looked at.
    let mut watch = match follow {
        true => Some(pod::wake::RecordWatch::open(&pod::store::PodStore::new(roots).dir(name).path, None)?),
        false => None,
    };
    if let Some(w) = watch.as_mut() {
        w.add_dir(&rt.exits_dir());
    }
    let (mut log_dir_watched, mut supervisor_watched) = (None, 0);
    loop {
        if let (Some(w), Some(d)) = (watch.as_mut(), path.parent()) {
            if log_dir_watched.as_deref() != Some(d) && w.add_dir(d) {
                log_dir_watched = Some(d.to_path_buf());
            }
        }
        offset = pod::print_log(&path, offset, &mut out);
        let _ = out.flush();
        if !follow {
            return Ok(0);
        }
        let rec = pod::status(roots, rt, name)?;
        let current = pod::log_path(roots, rt, name, container)?;
        if current != path {
            // A restart began a new log: finish the old one, go on with it.
            pod::print_log(&path, offset, &mut out);
            path = current;
            offset = 0;
            continue;
        }
        let c = rec
            .containers
            .iter()
            .find(|c| match container {
                Some(n) => c.name == n,
                None => !c.init,
            })
            .ok_or_else(|| {
                Error::Runtime(crate::runtime::RuntimeError::not_found(format!(
                    "pod {:?} has no container {:?}",
                    rec.name,
                    container.unwrap_or("")
                )))
            })?;
        if c.state == ContainerState::Terminated && (rec.is_final() || !pod::supervisor_alive(&rec)) {
            pod::print_log(&path, offset, &mut out);
            return Ok(0);
        }
        let Some(w) = watch.as_mut() else { return Ok(0) };
        if rec.supervisor_pid != supervisor_watched || w.process_gone() {
            // A supervisor that ends while the container has ended too
            // ends the follow; one started anew is watched in its place.
            // Looked at again once it is watched: an end just before
            // is not missed.
            w.watch_process(Some(rec.supervisor_pid).filter(|_| pod::supervisor_alive(&rec)));
            supervisor_watched = rec.supervisor_pid;
            continue;
        }
        w.wait(std::time::Instant::now() + Duration::from_secs(3600));
    }
}
