//! CreateContainer, StartContainer, StopContainer, RemoveContainer,
//! ListContainers, ContainerStatus, UpdateContainerResources,
//! ReopenContainerLog: a CRI `ContainerConfig` becomes hull's, its image
//! resolved from the store first; statuses go back as CRI messages.
use std::path::{Component, Path};
use std::time::Duration;

use k8s_cri::v1 as cri;
use tonic::Status;

use super::convert::{
    btree, hash, id_value, ids, namespace_options, nanos, opt_nanos, own_oom_score_adj, resources, resources_message, seccomp,
};
use super::errors::{gone_is_ok, ignore_not_found, invalid, not_found, status as to_status};
use super::sandbox::{id_matches, sandbox_id, shown};
use super::service::{blocking, Cri};
use crate::runtime as rt;

/// The longest stop timeout taken from a request (a day).
const MAX_STOP_TIMEOUT: i64 = 86_400;

pub fn container_id(field: &str, id: &str) -> Result<rt::ContainerId, Status> {
    if id.is_empty() {
        return Err(invalid(field, "empty"));
    }
    rt::ContainerId::parse(id).map_err(|_| not_found(format!("container {:?} not found", shown(id))))
}

/// A path inside the container: absolute, without `..`.
fn container_path(field: &str, p: &str) -> Result<(), Status> {
    let path = Path::new(p);
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) || p.contains('\0') {
        return Err(invalid(field, format!("{p:?} is not an absolute path without ..")));
    }
    Ok(())
}

fn mount(i: usize, m: cri::Mount) -> Result<rt::Mount, Status> {
    let field = format!("config.mounts[{i}]");
    if m.selinux_relabel {
        super::convert::selinux(
            &format!("{field}.selinux_relabel"),
            &Some(cri::SeLinuxOption { r#type: "relabel".into(), ..Default::default() }),
        )?;
    }
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        // The CRI's mount mappings are those of the pod's user namespace
        // (the kubelet sends them only for a pod with hostUsers: false),
        // and hull's CRI has no pod user namespaces (Status says so).
        return Err(super::errors::unimplemented(format!(
            "{field}.uidMappings/gidMappings: id-mapped mounts come with pod user namespaces, which hull's CRI does not support"
        )));
    }
    container_path(&format!("{field}.container_path"), &m.container_path)?;
    if let Some(image) = m.image {
        // An image volume (Kubernetes ImageVolume): the image, which the
        // kubelet pulled first, mounted read-only; there is no host path.
        if image.image.is_empty() {
            return Err(invalid(&format!("{field}.image.image"), "empty"));
        }
        if !m.host_path.is_empty() {
            return Err(invalid(&format!("{field}.host_path"), "an image volume has no host path"));
        }
        return Ok(rt::Mount { container_path: m.container_path, readonly: true, image: Some(image.image), ..Default::default() });
    }
    if !Path::new(&m.host_path).is_absolute() || m.host_path.contains('\0') {
        return Err(invalid(&format!("{field}.host_path"), format!("{:?} is not an absolute path", m.host_path)));
    }
    let propagation = match cri::MountPropagation::try_from(m.propagation) {
        Ok(cri::MountPropagation::PropagationPrivate) => rt::MountPropagation::Private,
        Ok(cri::MountPropagation::PropagationHostToContainer) => rt::MountPropagation::HostToContainer,
        Ok(cri::MountPropagation::PropagationBidirectional) => rt::MountPropagation::Bidirectional,
        Err(_) => return Err(invalid(&format!("{field}.propagation"), format!("unknown propagation {}", m.propagation))),
    };
    // The CRI: a recursive read-only mount is read-only and private (a
    // submount propagated in later would not be read-only).
    if m.recursive_read_only {
        if !m.readonly {
            return Err(invalid(&format!("{field}.readonly"), "recursive_read_only needs readonly true"));
        }
        if propagation != rt::MountPropagation::Private {
            return Err(invalid(&format!("{field}.propagation"), "recursive_read_only needs PROPAGATION_PRIVATE"));
        }
    }
    Ok(rt::Mount {
        container_path: m.container_path,
        host_path: m.host_path.into(),
        readonly: m.readonly,
        propagation,
        recursive_readonly: m.recursive_read_only,
        ..Default::default()
    })
}

/// `log_path`: relative to the sandbox's log directory, never out of it.
fn log_path(p: &str) -> Result<String, Status> {
    let path = Path::new(p);
    if path.is_absolute() || path.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) || p.contains('\0') {
        return Err(invalid("config.log_path", format!("{p:?} must be relative to the sandbox's log_directory, without ..")));
    }
    Ok(p.to_string())
}

/// The deprecated string forms of the seccomp and AppArmor profiles
/// (the generated code marks them so).
#[allow(deprecated)]
fn deprecated_profiles(sc: &cri::LinuxContainerSecurityContext) -> (&str, &str) {
    (&sc.seccomp_profile_path, &sc.apparmor_profile)
}

/// The CRI container config as hull's; `image` is what the store resolved
/// the request's image to.
pub fn container_config(cri: &Cri, c: cri::ContainerConfig, image: String) -> Result<rt::ContainerConfig, Status> {
    let m = c.metadata.ok_or_else(|| invalid("config.metadata", "missing"))?;
    if m.name.is_empty() {
        return Err(invalid("config.metadata.name", "empty"));
    }
    if c.windows.is_some() {
        return Err(invalid("config.windows", "hull runs Linux containers"));
    }
    // CDI devices by the CRI field and by the kubelet's device-plugin
    // annotations (`cdi.k8s.io/<key>: vendor.com/class=name,...`), as
    // containerd takes both; resolved now, so the record keeps the edits.
    let mut cdi_names: Vec<String> = c.cdi_devices.iter().map(|d| d.name.clone()).collect();
    cdi_names.extend(rt::cdi::annotation_devices(&btree(c.annotations.clone())));
    let cdi = rt::cdi::resolve(&cri.config.cdi_spec_dirs, &cdi_names).map_err(|e| invalid("config", e.to_string()))?;
    let mut envs = Vec::with_capacity(c.envs.len());
    for (i, kv) in c.envs.into_iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains('=') || kv.key.contains('\0') || kv.value.contains('\0') {
            return Err(invalid(&format!("config.envs[{i}].key"), format!("{:?} is not a variable name", kv.key)));
        }
        envs.push((kv.key, kv.value));
    }
    let mounts = c.mounts.into_iter().enumerate().map(|(i, m)| mount(i, m)).collect::<Result<Vec<_>, _>>()?;
    let mut devices = Vec::new();
    for (i, d) in c.devices.into_iter().enumerate() {
        container_path(&format!("config.devices[{i}].container_path"), &d.container_path)?;
        if !Path::new(&d.host_path).is_absolute() {
            return Err(invalid(&format!("config.devices[{i}].host_path"), format!("{:?} is not an absolute path", d.host_path)));
        }
        if d.permissions.is_empty() || !d.permissions.chars().all(|ch| "rwm".contains(ch)) {
            return Err(invalid(&format!("config.devices[{i}].permissions"), format!("{:?}: expected some of r, w, m", d.permissions)));
        }
        devices.push(rt::Device { container_path: d.container_path, host_path: d.host_path.into(), permissions: d.permissions });
    }
    let log_path = if c.log_path.is_empty() { String::new() } else { log_path(&c.log_path)? };
    let linux = c.linux.unwrap_or_default();
    let sc = linux.security_context.unwrap_or_default();
    let f = "config.linux.security_context";
    super::convert::selinux(&format!("{f}.selinux_options"), &sc.selinux_options)?;
    let (seccomp_path, apparmor_profile) = deprecated_profiles(&sc);
    if !seccomp_path.is_empty() {
        return Err(invalid(&format!("{f}.seccomp_profile_path"), "deprecated; use seccomp"));
    }
    // The deprecated AppArmor string counts when `apparmor` is unset (the
    // kubelet sends both, alike).
    let aa_field = if sc.apparmor.is_none() && !apparmor_profile.is_empty() { "apparmor_profile" } else { "apparmor" };
    super::convert::apparmor(&format!("{f}.{aa_field}"), &sc.apparmor, apparmor_profile)?;
    if sc.supplemental_groups_policy != 0 {
        return Err(super::errors::unimplemented(format!("{f}.supplemental_groups_policy: only Merge is supported")));
    }
    let caps = sc.capabilities.unwrap_or_default();
    if !caps.add_ambient_capabilities.is_empty() {
        return Err(super::errors::unimplemented(format!(
            "{f}.capabilities.add_ambient_capabilities: ambient capabilities are not supported"
        )));
    }
    let security_context = rt::ContainerSecurityContext {
        capabilities: rt::Capabilities { add: caps.add_capabilities, drop: caps.drop_capabilities },
        privileged: sc.privileged,
        namespace_options: namespace_options(&format!("{f}.namespace_options"), sc.namespace_options)?,
        run_as_user: id_value(&format!("{f}.run_as_user"), &sc.run_as_user)?,
        run_as_group: id_value(&format!("{f}.run_as_group"), &sc.run_as_group)?,
        run_as_username: Some(sc.run_as_username).filter(|u| !u.is_empty()),
        supplemental_groups: ids(&format!("{f}.supplemental_groups"), &sc.supplemental_groups)?,
        readonly_rootfs: sc.readonly_rootfs,
        no_new_privs: sc.no_new_privs,
        // The CRI's rule: the lists are the whole truth, empty means none.
        masked_paths: Some(sc.masked_paths),
        readonly_paths: Some(sc.readonly_paths),
        seccomp: seccomp(&format!("{f}.seccomp"), sc.seccomp, cri.config.seccomp_profile.as_ref())?,
        run_as_non_root: false,
    };
    Ok(rt::ContainerConfig {
        metadata: rt::ContainerMetadata { name: m.name, attempt: m.attempt },
        image: rt::ImageSpec { image },
        command: c.command,
        args: c.args,
        working_dir: c.working_dir,
        envs,
        mounts,
        devices,
        cdi,
        labels: btree(c.labels),
        annotations: btree(c.annotations),
        log_path,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        resources: resources("config.linux.resources", linux.resources, own_oom_score_adj())?,
        security_context,
        stop_signal: None,
        no_etc_files: false,
    })
}

pub async fn create(cri: &Cri, req: cri::CreateContainerRequest) -> Result<cri::CreateContainerResponse, Status> {
    let sandbox = sandbox_id("pod_sandbox_id", &req.pod_sandbox_id)?;
    let config = req.config.ok_or_else(|| invalid("config", "missing"))?;
    let image = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
    if image.is_empty() {
        return Err(invalid("config.image.image", "empty"));
    }
    let cri2 = cri.clone();
    blocking(move || {
        // Only images in the store: never a host directory named by a request.
        let id = cri2
            .images
            .resolve_id(&image)?
            .ok_or_else(|| not_found(format!("image {image:?} not found: pull it first")))?;
        let mut config = container_config(&cri2, config, id.to_string())?;
        for (i, m) in config.mounts.iter_mut().enumerate() {
            if let Some(image) = &m.image {
                let id = cri2
                    .images
                    .resolve_id(image)?
                    .ok_or_else(|| not_found(format!("config.mounts[{i}].image {image:?} not found: pull it first")))?;
                m.image = Some(id.to_string());
            }
        }
        for m in config.mounts.iter().filter(|m| m.image.is_none()) {
            if std::fs::symlink_metadata(&m.host_path).is_err() {
                return Err(invalid("config.mounts.host_path", format!("{} does not exist", m.host_path.display())));
            }
        }
        // The OCI create runs on while this returns, as containerd's runc
        // create runs in StartContainer: its failure is StartContainer's
        // error and the container's StartError (exit code 128).
        let cid = cri2.runtime.launch_container(&sandbox, &config).map_err(to_status)?;
        tracing::info!(container = %cid, "container created");
        Ok(cri::CreateContainerResponse { container_id: cid.to_string() })
    })
    .await
}

pub async fn start(cri: &Cri, req: cri::StartContainerRequest) -> Result<cri::StartContainerResponse, Status> {
    let id = container_id("container_id", &req.container_id)?;
    let runtime = cri.runtime.clone();
    blocking(move || runtime.start_container(&id).map_err(to_status)).await?;
    Ok(cri::StartContainerResponse {})
}

/// Idempotent, like RemoveContainer: what does not exist is stopped.
pub async fn stop(cri: &Cri, req: cri::StopContainerRequest) -> Result<cri::StopContainerResponse, Status> {
    let Some(id) = gone_is_ok(container_id("container_id", &req.container_id))? else {
        return Ok(cri::StopContainerResponse {});
    };
    let timeout = Duration::from_secs(req.timeout.clamp(0, MAX_STOP_TIMEOUT) as u64);
    let runtime = cri.runtime.clone();
    blocking(move || ignore_not_found(runtime.stop_container(&id, timeout))).await?;
    Ok(cri::StopContainerResponse {})
}

pub async fn remove(cri: &Cri, req: cri::RemoveContainerRequest) -> Result<cri::RemoveContainerResponse, Status> {
    let Some(id) = gone_is_ok(container_id("container_id", &req.container_id))? else {
        return Ok(cri::RemoveContainerResponse {});
    };
    let runtime = cri.runtime.clone();
    blocking(move || ignore_not_found(runtime.remove_container(&id))).await?;
    Ok(cri::RemoveContainerResponse {})
}

pub fn state_value(s: rt::ContainerState) -> i32 {
    (match s {
        rt::ContainerState::Created => cri::ContainerState::ContainerCreated,
        rt::ContainerState::Running => cri::ContainerState::ContainerRunning,
        rt::ContainerState::Exited => cri::ContainerState::ContainerExited,
        rt::ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    }) as i32
}

fn metadata_message(m: &rt::ContainerMetadata) -> cri::ContainerMetadata {
    cri::ContainerMetadata { name: m.name.clone(), attempt: m.attempt }
}

fn mount_message(m: &rt::Mount) -> cri::Mount {
    let propagation = match m.propagation {
        rt::MountPropagation::Private => cri::MountPropagation::PropagationPrivate,
        rt::MountPropagation::HostToContainer => cri::MountPropagation::PropagationHostToContainer,
        rt::MountPropagation::Bidirectional => cri::MountPropagation::PropagationBidirectional,
    };
    cri::Mount {
        container_path: m.container_path.clone(),
        host_path: m.host_path.display().to_string(),
        readonly: m.readonly,
        recursive_read_only: m.recursive_readonly,
        propagation: propagation as i32,
        ..Default::default()
    }
}

pub fn status_message(s: &rt::ContainerStatus) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: s.id.to_string(),
        metadata: Some(metadata_message(&s.metadata)),
        state: state_value(s.state),
        created_at: nanos(s.created_at),
        started_at: opt_nanos(s.started_at),
        finished_at: opt_nanos(s.finished_at),
        exit_code: s.exit_code.unwrap_or(0),
        image: Some(cri::ImageSpec { image: s.image.clone(), ..Default::default() }),
        // Containers are made from image ids (create resolves the name), so
        // this is the id ListImages reports: the kubelet's image GC matches them.
        image_ref: s.image.clone(),
        reason: s.reason.clone(),
        message: s.message.clone(),
        labels: hash(&s.labels),
        annotations: hash(&s.annotations),
        mounts: s.mounts.iter().map(mount_message).collect(),
        log_path: s.log_path.display().to_string(),
        resources: s
            .resources
            .as_ref()
            .map(|r| cri::ContainerResources { linux: Some(resources_message(r)), windows: None }),
        image_id: s.image.clone(),
        user: None,
    }
}

pub async fn status(cri: &Cri, req: cri::ContainerStatusRequest) -> Result<cri::ContainerStatusResponse, Status> {
    let id = container_id("container_id", &req.container_id)?;
    let runtime = cri.runtime.clone();
    let images = cri.images.clone();
    let verbose = req.verbose;
    blocking(move || {
        let s = runtime.container_status(&id).map_err(to_status)?;
        let mut status = status_message(&s);
        // The image by its first name, as the pod spec shows it.
        if let Some(tag) = images.first_tag(&s.image) {
            status.image = Some(cri::ImageSpec { image: tag, ..Default::default() });
        }
        let mut info = std::collections::HashMap::new();
        if verbose {
            let v = serde_json::json!({
                "pid": s.pid,
                "sandboxID": s.sandbox_id,
                "image": s.image,
                "imageRef": s.image_ref,
                "logPath": s.log_path,
                "runtimeSpec": runtime.container_spec(&id),
            });
            info.insert("info".to_string(), v.to_string());
        }
        Ok(cri::ContainerStatusResponse { status: Some(status), info })
    })
    .await
}

fn state_filter(v: i32) -> Result<rt::ContainerState, Status> {
    match cri::ContainerState::try_from(v) {
        Ok(cri::ContainerState::ContainerCreated) => Ok(rt::ContainerState::Created),
        Ok(cri::ContainerState::ContainerRunning) => Ok(rt::ContainerState::Running),
        Ok(cri::ContainerState::ContainerExited) => Ok(rt::ContainerState::Exited),
        Ok(cri::ContainerState::ContainerUnknown) => Ok(rt::ContainerState::Unknown),
        Err(_) => Err(invalid("filter.state.state", format!("unknown container state {v}"))),
    }
}

/// A runtime filter and the id prefixes left to match here; None when a
/// filter id cannot match anything.
pub fn container_filter(id: &str, sandbox: &str, labels: std::collections::HashMap<String, String>) -> Option<rt::ContainerFilter> {
    let mut filter = rt::ContainerFilter { label_selector: btree(labels), ..Default::default() };
    if id.len() == rt::id::ID_LEN {
        filter.id = Some(rt::ContainerId::parse(id).ok()?);
    }
    if sandbox.len() == rt::id::ID_LEN {
        filter.sandbox_id = Some(rt::SandboxId::parse(sandbox).ok()?);
    }
    Some(filter)
}

pub async fn list(cri: &Cri, req: cri::ListContainersRequest) -> Result<cri::ListContainersResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let state = f.state.map(|s| state_filter(s.state)).transpose()?;
    let Some(mut filter) = container_filter(&f.id, &f.pod_sandbox_id, f.label_selector) else {
        return Ok(cri::ListContainersResponse::default());
    };
    filter.state = state;
    let (id, sandbox) = (f.id, f.pod_sandbox_id);
    let runtime = cri.runtime.clone();
    blocking(move || {
        let all = runtime.list_containers(&filter).map_err(to_status)?;
        let containers = all
            .iter()
            .filter(|c| id_matches(&id, c.id.as_str()) && id_matches(&sandbox, c.sandbox_id.as_str()))
            .map(|c| cri::Container {
                id: c.id.to_string(),
                pod_sandbox_id: c.sandbox_id.to_string(),
                metadata: Some(metadata_message(&c.metadata)),
                image: Some(cri::ImageSpec { image: c.image.clone(), ..Default::default() }),
                image_ref: c.image.clone(),
                state: state_value(c.state),
                created_at: nanos(c.created_at),
                labels: hash(&c.labels),
                annotations: hash(&c.annotations),
                image_id: c.image.clone(),
            })
            .collect();
        Ok(cri::ListContainersResponse { containers })
    })
    .await
}

pub async fn update_resources(
    cri: &Cri,
    req: cri::UpdateContainerResourcesRequest,
) -> Result<cri::UpdateContainerResourcesResponse, Status> {
    let id = container_id("container_id", &req.container_id)?;
    if req.windows.is_some() {
        return Err(invalid("windows", "hull runs Linux containers"));
    }
    let r = resources("linux", req.linux, own_oom_score_adj())?.ok_or_else(|| invalid("linux", "missing"))?;
    let runtime = cri.runtime.clone();
    blocking(move || runtime.update_resources(&id, &r).map_err(to_status)).await?;
    Ok(cri::UpdateContainerResourcesResponse {})
}

pub async fn reopen_log(cri: &Cri, req: cri::ReopenContainerLogRequest) -> Result<cri::ReopenContainerLogResponse, Status> {
    let id = container_id("container_id", &req.container_id)?;
    let runtime = cri.runtime.clone();
    blocking(move || runtime.reopen_log(&id).map_err(to_status)).await?;
    Ok(cri::ReopenContainerLogResponse {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_paths_stay_in_the_log_directory() {
        assert_eq!(log_path("c/0.log").unwrap(), "c/0.log");
        for bad in ["../x.log", "/var/log/x", "a/../../b", "a\0b"] {
            let e = log_path(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(e.message().starts_with("config.log_path"), "{}", e.message());
        }
    }

    #[test]
    fn mounts_are_checked() {
        let m = |c: &str, h: &str| cri::Mount { container_path: c.into(), host_path: h.into(), ..Default::default() };
        assert!(mount(0, m("/data", "/tmp")).is_ok());
        assert!(mount(0, m("data", "/tmp")).unwrap_err().message().starts_with("config.mounts[0].container_path"));
        assert!(mount(1, m("/a/../../etc", "/tmp"))
            .unwrap_err()
            .message()
            .starts_with("config.mounts[1].container_path"));
        assert!(mount(0, m("/data", "tmp")).unwrap_err().message().starts_with("config.mounts[0].host_path"));
        let img = |i: &str, h: &str| cri::Mount { image: Some(cri::ImageSpec { image: i.into(), ..Default::default() }), ..m("/data", h) };
        assert!(mount(0, img("", "")).unwrap_err().message().starts_with("config.mounts[0].image.image: empty"));
        assert!(mount(0, img("busybox", "/tmp")).unwrap_err().message().starts_with("config.mounts[0].host_path"));
        let ok = mount(0, img("busybox", "")).unwrap();
        assert_eq!((ok.image.as_deref(), ok.readonly, ok.container_path.as_str()), (Some("busybox"), true, "/data"));
        let bad = cri::Mount { propagation: 7, ..m("/d", "/tmp") };
        assert!(mount(0, bad).is_err());
        let ids = vec![cri::IdMapping { host_id: 1000, container_id: 0, length: 1 }];
        let e = mount(0, cri::Mount { uid_mappings: ids.clone(), gid_mappings: ids, ..m("/d", "/tmp") }).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        assert!(e.message().starts_with("config.mounts[0].uidMappings"), "{}", e.message());
        let rro = cri::Mount { recursive_read_only: true, readonly: true, ..m("/d", "/tmp") };
        assert!(mount(0, rro.clone()).unwrap().recursive_readonly);
        let e = mount(0, cri::Mount { readonly: false, ..rro.clone() }).unwrap_err();
        assert!(e.message().starts_with("config.mounts[0].readonly"), "{}", e.message());
        let e = mount(0, cri::Mount { propagation: cri::MountPropagation::PropagationHostToContainer as i32, ..rro }).unwrap_err();
        assert!(e.message().starts_with("config.mounts[0].propagation"), "{}", e.message());
    }
}
