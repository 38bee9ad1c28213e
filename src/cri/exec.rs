//! ExecSync, and the streaming RPCs (Exec, Attach, PortForward): those are
//! validated like the kubelet needs (unknown → NotFound, not running →
//! FailedPrecondition) and answered with a single-use URL on the streaming
//! server (src/stream). Attach goes to the container's stdio, which its
//! monitor holds (stdin pipe or terminal, output fan-out).
use std::time::Duration;

use k8s_cri::v1 as cri;
use tonic::Status;

use super::container::container_id;
use super::errors::{invalid, precondition, status as to_status};
use super::sandbox::sandbox_id;
use super::service::{blocking, Cri};
use crate::runtime as rt;

/// The longest ExecSync timeout taken from a request (a day).
const MAX_EXEC_TIMEOUT: i64 = 86_400;
/// Bounds on the command a request may run.
const MAX_ARGS: usize = 4096;
const MAX_ARG_BYTES: usize = 1 << 20;

fn check_cmd(cmd: &[String]) -> Result<(), Status> {
    if cmd.is_empty() || cmd[0].is_empty() {
        return Err(invalid("cmd", "empty"));
    }
    if cmd.len() > MAX_ARGS || cmd.iter().map(|a| a.len()).sum::<usize>() > MAX_ARG_BYTES {
        return Err(invalid("cmd", format!("more than {MAX_ARGS} arguments or {MAX_ARG_BYTES} bytes")));
    }
    if cmd.iter().any(|a| a.contains('\0')) {
        return Err(invalid("cmd", "an argument holds a NUL byte"));
    }
    Ok(())
}

pub async fn exec_sync(cri: &Cri, req: cri::ExecSyncRequest) -> Result<cri::ExecSyncResponse, Status> {
    let id = container_id("container_id", &req.container_id)?;
    check_cmd(&req.cmd)?;
    if req.timeout < 0 {
        return Err(invalid("timeout", format!("{} is negative", req.timeout)));
    }
    let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout.min(MAX_EXEC_TIMEOUT) as u64));
    let runtime = cri.runtime.clone();
    let r = blocking(move || runtime.exec_sync(&id, &req.cmd, timeout).map_err(to_status)).await?;
    Ok(cri::ExecSyncResponse { stdout: r.stdout, stderr: r.stderr, exit_code: r.exit_code })
}

/// The container must exist and run.
async fn running(cri: &Cri, id: &str) -> Result<rt::ContainerId, Status> {
    let id = container_id("container_id", id)?;
    let runtime = cri.runtime.clone();
    let s = blocking(move || runtime.container_status(&id).map_err(to_status)).await?;
    if s.state != rt::ContainerState::Running {
        return Err(precondition(format!("container {} is not running ({:?})", s.id, s.state)));
    }
    Ok(s.id)
}

fn url(r: std::io::Result<String>) -> Result<String, Status> {
    r.map_err(|e| Status::internal(format!("issue a streaming URL: {e}")))
}

pub async fn exec(cri: &Cri, req: cri::ExecRequest) -> Result<cri::ExecResponse, Status> {
    check_cmd(&req.cmd)?;
    if !(req.stdin || req.stdout || req.stderr) {
        return Err(invalid("stdin, stdout, stderr", "one of them must be set"));
    }
    if req.tty && req.stderr {
        // The kubelet never asks for both: a terminal has one output.
        return Err(invalid("stderr", "must be false with tty"));
    }
    let id = running(cri, &req.container_id).await?;
    let target = crate::stream::exec::ExecTarget {
        hull: cri.runtime.options().hull.clone(),
        state_root: cri.runtime.oci_root().path.clone(),
        container: id.to_string(),
        cmd: req.cmd,
        tty: req.tty,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
    };
    let url = url(cri.streams.issue(crate::stream::server::Target::Exec(target)))?;
    Ok(cri::ExecResponse { url })
}

pub async fn attach(cri: &Cri, req: cri::AttachRequest) -> Result<cri::AttachResponse, Status> {
    if !(req.stdin || req.stdout || req.stderr) {
        return Err(invalid("stdin, stdout, stderr", "one of them must be set"));
    }
    let id = running(cri, &req.container_id).await?;
    let runtime = cri.runtime.clone();
    let point = blocking(move || runtime.attach(&id).map_err(to_status)).await?;
    if req.stdin && !point.stdin {
        return Err(precondition(format!("stdin: container {} was not created with stdin", point.container)));
    }
    if req.tty && !point.tty {
        return Err(precondition(format!("tty: container {} was not created with a tty", point.container)));
    }
    let target = crate::stream::session::AttachTarget { point, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr };
    let url = url(cri.streams.issue(crate::stream::server::Target::Attach(target)))?;
    Ok(cri::AttachResponse { url })
}

pub async fn port_forward(cri: &Cri, req: cri::PortForwardRequest) -> Result<cri::PortForwardResponse, Status> {
    let id = sandbox_id("pod_sandbox_id", &req.pod_sandbox_id)?;
    if let Some(p) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(invalid("port", format!("{p} is not a port")));
    }
    let runtime = cri.runtime.clone();
    let s = blocking(move || runtime.sandbox_status(&id).map_err(to_status)).await?;
    if s.state != rt::SandboxState::Ready {
        return Err(precondition(format!("sandbox {} is not ready", s.id)));
    }
    let Some(holder) = s.holder_pid else {
        return Err(precondition(format!("sandbox {} has no network namespace holder", s.id)));
    };
    // The holder is in the pod's network namespace (the node's for a
    // host-network pod, as containerd forwards those too).
    let target = crate::stream::portforward::PortForwardTarget {
        netns: std::path::PathBuf::from(format!("/proc/{holder}/ns/net")),
        ports: req.port.iter().map(|p| *p as u16).collect(),
    };
    let url = url(cri.streams.issue(crate::stream::server::Target::PortForward(target)))?;
    Ok(cri::PortForwardResponse { url })
}
