//! Version, Status, RuntimeConfig, UpdateRuntimeConfig: what the kubelet
//! asks about the runtime itself.
use k8s_cri::v1 as cri;
use tonic::Status;
use tracing::{debug, info};

use super::cni_template::{self, Data, Outcome};
use super::config::CgroupDriver;
use super::service::{blocking, Cri};
use crate::network::{CniConfig, NetworkError};

/// The CRI API version hull serves.
pub const API_VERSION: &str = "v1";
pub const RUNTIME_NAME: &str = "hull";

pub async fn version(_req: cri::VersionRequest) -> Result<cri::VersionResponse, Status> {
    Ok(cri::VersionResponse {
        // The kubelet's own API version field (always 0.1.0 in the CRI).
        version: "0.1.0".into(),
        runtime_name: RUNTIME_NAME.into(),
        runtime_version: env!("CARGO_PKG_VERSION").into(),
        runtime_api_version: API_VERSION.into(),
    })
}

fn condition(kind: &str, ok: bool, reason: &str, message: String) -> cri::RuntimeCondition {
    cri::RuntimeCondition { r#type: kind.into(), status: ok, reason: reason.into(), message }
}

/// NetworkReady: a CNI network config is found (and parses).
fn network_condition(cfg: &super::config::DaemonConfig) -> cri::RuntimeCondition {
    match CniConfig::discover(&cfg.cni_options()) {
        Ok(c) => condition("NetworkReady", true, "", format!("CNI network {:?} from {}", c.list.name, c.source.display())),
        Err(NetworkError::NoConfig { dir }) => {
            let pending = match &cfg.cni_conf_template {
                Some(t) => format!("; cni_conf_template {} is rendered there once the kubelet sends the pod CIDR", t.display()),
                None => String::new(),
            };
            let message = format!("no CNI network config (*.conflist, *.conf, *.json) in {}{pending}", dir.display());
            condition("NetworkReady", false, "NetworkPluginNotReady", message)
        }
        Err(e) => condition("NetworkReady", false, "NetworkPluginNotReady", format!("CNI network config: {e}")),
    }
}

pub async fn status(cri: &Cri, req: cri::StatusRequest) -> Result<cri::StatusResponse, Status> {
    let cfg = cri.config.clone();
    let network = blocking(move || Ok(network_condition(&cfg))).await?;
    let conditions = vec![condition("RuntimeReady", true, "", String::new()), network];
    let mut info = std::collections::HashMap::new();
    if req.verbose {
        let pod_cidr = cri.pod_cidr.lock().map(|c| c.clone()).unwrap_or_default();
        let v = serde_json::json!({
            "config": &*cri.config,
            "image_root": cri.config.image_root(),
            "pod_cidr": pod_cidr,
            "version": env!("CARGO_PKG_VERSION"),
        });
        info.insert("config".to_string(), v.to_string());
    }
    Ok(cri::StatusResponse {
        status: Some(cri::RuntimeStatus { conditions }),
        info,
        runtime_handlers: vec![cri::RuntimeHandler {
            name: String::new(),
            features: Some(cri::RuntimeHandlerFeatures { recursive_read_only_mounts: true, user_namespaces: false }),
        }],
        features: Some(cri::RuntimeFeatures { supplemental_groups_policy: false }),
    })
}

/// The kubelet (KubeletCgroupDriverFromCRI) takes its cgroup driver from here.
pub async fn runtime_config(cri: &Cri) -> Result<cri::RuntimeConfigResponse, Status> {
    let driver = match cri.config.cgroup_driver {
        CgroupDriver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
        CgroupDriver::Systemd => cri::CgroupDriver::Systemd,
    };
    Ok(cri::RuntimeConfigResponse { linux: Some(cri::LinuxRuntimeConfiguration { cgroup_driver: driver as i32 }) })
}

/// The kubelet sends the node's pod CIDR here once it knows it (one CIDR,
/// or one per address family joined by commas). With a
/// `cni_conf_template` and no CNI config yet, it is rendered into the CNI
/// conf dir, as containerd does; the next Status and RunPodSandbox find it.
pub async fn update_runtime_config(cri: &Cri, req: cri::UpdateRuntimeConfigRequest) -> Result<cri::UpdateRuntimeConfigResponse, Status> {
    let cidr = req.runtime_config.and_then(|c| c.network_config).map(|n| n.pod_cidr).unwrap_or_default();
    if cidr.is_empty() {
        return Ok(cri::UpdateRuntimeConfigResponse {});
    }
    let data = Data::from_pod_cidr(&cidr).map_err(|e| super::errors::invalid("runtime_config.network_config.pod_cidr", e))?;
    {
        let cidr = data.pod_cidr_ranges.join(",");
        let mut slot = cri.pod_cidr.lock().map_err(|_| super::errors::internal("pod CIDR lock poisoned"))?;
        if *slot != cidr {
            info!(pod_cidr = %cidr, "pod CIDR set");
            *slot = cidr;
        }
    }
    let Some(template) = cri.config.cni_conf_template.clone() else {
        debug!("no cni_conf_template: the CNI network config is left to the node's other components");
        return Ok(cri::UpdateRuntimeConfigResponse {});
    };
    let cri = cri.clone();
    blocking(move || {
        // One writer at a time: a second call finds the first one's file.
        let _one = cri.cni_template_lock.lock().map_err(|_| super::errors::internal("CNI template lock poisoned"))?;
        match cni_template::write_config(&cri.config.cni_options(), &template, &data) {
            Ok(Outcome::Present(p)) => debug!(config = %p.display(), "a CNI config exists: cni_conf_template not rendered"),
            Ok(Outcome::Written(p)) => {
                info!(config = %p.display(), template = %template.display(), "CNI config written from cni_conf_template")
            }
            Err(e) => return Err(super::errors::precondition(format!("cni_conf_template: {e}"))),
        }
        Ok(())
    })
    .await?;
    Ok(cri::UpdateRuntimeConfigResponse {})
}
