//! Version, Status, RuntimeConfig, UpdateRuntimeConfig: what the kubelet
//! asks about the runtime itself.
use k8s_cri::v1 as cri;
use tonic::Status;
use tracing::info;

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
        Err(NetworkError::NoConfig { dir }) => condition(
            "NetworkReady",
            false,
            "NetworkPluginNotReady",
            format!("no CNI network config (*.conflist, *.conf, *.json) in {}", dir.display()),
        ),
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

pub async fn runtime_config() -> Result<cri::RuntimeConfigResponse, Status> {
    Ok(cri::RuntimeConfigResponse { linux: Some(cri::LinuxRuntimeConfiguration { cgroup_driver: cri::CgroupDriver::Cgroupfs as i32 }) })
}

/// The kubelet sends the node's pod CIDR here once it knows it.
pub async fn update_runtime_config(cri: &Cri, req: cri::UpdateRuntimeConfigRequest) -> Result<cri::UpdateRuntimeConfigResponse, Status> {
    let cidr = req.runtime_config.and_then(|c| c.network_config).map(|n| n.pod_cidr).unwrap_or_default();
    if cidr.is_empty() {
        return Ok(cri::UpdateRuntimeConfigResponse {});
    }
    let (addr, len) = cidr
        .split_once('/')
        .ok_or_else(|| super::errors::invalid("runtime_config.network_config.pod_cidr", format!("{cidr:?} is not a CIDR")))?;
    let max = match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return Err(super::errors::invalid("runtime_config.network_config.pod_cidr", format!("{cidr:?} is not a CIDR"))),
    };
    if len.parse::<u8>().map_or(true, |l| l > max) {
        return Err(super::errors::invalid("runtime_config.network_config.pod_cidr", format!("{cidr:?} is not a CIDR")));
    }
    let mut slot = cri.pod_cidr.lock().map_err(|_| super::errors::internal("pod CIDR lock poisoned"))?;
    if *slot != cidr {
        info!(pod_cidr = %cidr, "pod CIDR set");
        *slot = cidr;
    }
    Ok(cri::UpdateRuntimeConfigResponse {})
}
