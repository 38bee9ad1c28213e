//! The two CRI services' routing tables: each RPC opens its span (the RPC's
//! name and the ids it concerns), runs the translation in its group's file,
//! and logs how it ended. Blocking work runs in [`blocking`].
use std::fmt::Display;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::{debug, info_span, warn, Instrument};

use super::config::DaemonConfig;
use super::image::Images;
use super::{container, events, exec, sandbox, stats, version};
use crate::runtime::{Runtime, RuntimeOptions};

/// What every RPC may use.
pub struct State {
    pub runtime: Arc<Runtime>,
    pub images: Arc<Images>,
    pub config: Arc<DaemonConfig>,
    /// Becomes true when the daemon stops (server streams end).
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// The pod CIDR from UpdateRuntimeConfig.
    pub pod_cidr: Mutex<String>,
    /// Held while the CNI config template is rendered.
    pub cni_template_lock: Mutex<()>,
    pub cpu_samples: super::stats::CpuSamples,
    /// The streaming server the Exec and PortForward URLs point at.
    pub streams: crate::stream::server::Server,
}

#[derive(Clone)]
pub struct Cri(Arc<State>);

impl Deref for Cri {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

impl Cri {
    pub fn new(
        runtime: Arc<Runtime>,
        images: Arc<Images>,
        config: Arc<DaemonConfig>,
        stop: tokio::sync::watch::Receiver<bool>,
        streams: crate::stream::server::Server,
    ) -> Cri {
        Cri(Arc::new(State {
            runtime,
            images,
            config,
            stop,
            streams,
            pod_cidr: Mutex::new(String::new()),
            cni_template_lock: Mutex::new(()),
            cpu_samples: Default::default(),
        }))
    }
}

/// Open the runtime layer on the daemon's directories.
pub fn open_runtime(cfg: &DaemonConfig) -> crate::runtime::Result<Runtime> {
    let mut opts = RuntimeOptions::new(&cfg.state_dir, &cfg.run_dir);
    opts.image_root = cfg.image_root();
    opts.cni = cfg.cni_options();
    Runtime::open(opts)
}

/// Run `f` on tokio's blocking pool, inside the RPC's span.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| super::errors::internal(format!("worker task: {e}")))?
}

/// One RPC: its span, its outcome in the log.
async fn rpc<T>(name: &'static str, ids: impl Display, f: impl Future<Output = Result<T, Status>>) -> Result<Response<T>, Status> {
    let span = info_span!("rpc", rpc = name, id = %ids);
    async move {
        let started = Instant::now();
        let r = f.await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match &r {
            Ok(_) => debug!(ms, "ok"),
            // The kubelet asks after what it removed: not worth a warning.
            Err(s) if s.code() == tonic::Code::NotFound => {
                debug!(ms, code = ?s.code(), "{}", s.message())
            }
            Err(s) => warn!(ms, code = ?s.code(), "{}", s.message()),
        }
        r.map(Response::new)
    }
    .instrument(span)
    .await
}

fn pod_ids(m: &Option<cri::PodSandboxMetadata>) -> String {
    m.as_ref().map(|m| format!("{}/{}/{}", m.namespace, m.name, m.attempt)).unwrap_or_default()
}

fn image_name(i: &Option<cri::ImageSpec>) -> String {
    i.as_ref().map(|i| i.image.clone()).unwrap_or_default()
}

type EventStream = Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(&self, req: Request<cri::VersionRequest>) -> Result<Response<cri::VersionResponse>, Status> {
        rpc("Version", "", version::version(req.into_inner())).await
    }

    async fn status(&self, req: Request<cri::StatusRequest>) -> Result<Response<cri::StatusResponse>, Status> {
        rpc("Status", "", version::status(self, req.into_inner())).await
    }

    async fn runtime_config(&self, _req: Request<cri::RuntimeConfigRequest>) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        rpc("RuntimeConfig", "", version::runtime_config(self)).await
    }

    async fn update_runtime_config(
        &self,
        req: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        rpc("UpdateRuntimeConfig", "", version::update_runtime_config(self, req.into_inner())).await
    }

    async fn run_pod_sandbox(&self, req: Request<cri::RunPodSandboxRequest>) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let r = req.into_inner();
        let ids = r.config.as_ref().map(|c| pod_ids(&c.metadata)).unwrap_or_default();
        rpc("RunPodSandbox", ids, sandbox::run(self, r)).await
    }

    async fn stop_pod_sandbox(&self, req: Request<cri::StopPodSandboxRequest>) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let r = req.into_inner();
        rpc("StopPodSandbox", r.pod_sandbox_id.clone(), sandbox::stop(self, r)).await
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let r = req.into_inner();
        rpc("RemovePodSandbox", r.pod_sandbox_id.clone(), sandbox::remove(self, r)).await
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let r = req.into_inner();
        rpc("PodSandboxStatus", r.pod_sandbox_id.clone(), sandbox::status(self, r)).await
    }

    async fn list_pod_sandbox(&self, req: Request<cri::ListPodSandboxRequest>) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        rpc("ListPodSandbox", "", sandbox::list(self, req.into_inner())).await
    }

    async fn create_container(&self, req: Request<cri::CreateContainerRequest>) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let r = req.into_inner();
        let name = r
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| format!("{}/{}", m.name, m.attempt))
            .unwrap_or_default();
        let ids = format!("{} {name}", r.pod_sandbox_id);
        rpc("CreateContainer", ids, container::create(self, r)).await
    }

    async fn start_container(&self, req: Request<cri::StartContainerRequest>) -> Result<Response<cri::StartContainerResponse>, Status> {
        let r = req.into_inner();
        rpc("StartContainer", r.container_id.clone(), container::start(self, r)).await
    }

    async fn stop_container(&self, req: Request<cri::StopContainerRequest>) -> Result<Response<cri::StopContainerResponse>, Status> {
        let r = req.into_inner();
        rpc("StopContainer", r.container_id.clone(), container::stop(self, r)).await
    }

    async fn remove_container(&self, req: Request<cri::RemoveContainerRequest>) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let r = req.into_inner();
        rpc("RemoveContainer", r.container_id.clone(), container::remove(self, r)).await
    }

    async fn list_containers(&self, req: Request<cri::ListContainersRequest>) -> Result<Response<cri::ListContainersResponse>, Status> {
        rpc("ListContainers", "", container::list(self, req.into_inner())).await
    }

    async fn container_status(&self, req: Request<cri::ContainerStatusRequest>) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let r = req.into_inner();
        rpc("ContainerStatus", r.container_id.clone(), container::status(self, r)).await
    }

    async fn update_container_resources(
        &self,
        req: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        let r = req.into_inner();
        rpc("UpdateContainerResources", r.container_id.clone(), container::update_resources(self, r)).await
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        let r = req.into_inner();
        rpc("ReopenContainerLog", r.container_id.clone(), container::reopen_log(self, r)).await
    }

    async fn exec_sync(&self, req: Request<cri::ExecSyncRequest>) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let r = req.into_inner();
        rpc("ExecSync", r.container_id.clone(), exec::exec_sync(self, r)).await
    }

    async fn exec(&self, req: Request<cri::ExecRequest>) -> Result<Response<cri::ExecResponse>, Status> {
        let r = req.into_inner();
        rpc("Exec", r.container_id.clone(), exec::exec(self, r)).await
    }

    async fn attach(&self, req: Request<cri::AttachRequest>) -> Result<Response<cri::AttachResponse>, Status> {
        let r = req.into_inner();
        rpc("Attach", r.container_id.clone(), exec::attach(self, r)).await
    }

    async fn port_forward(&self, req: Request<cri::PortForwardRequest>) -> Result<Response<cri::PortForwardResponse>, Status> {
        let r = req.into_inner();
        rpc("PortForward", r.pod_sandbox_id.clone(), exec::port_forward(self, r)).await
    }

    async fn container_stats(&self, req: Request<cri::ContainerStatsRequest>) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let r = req.into_inner();
        rpc("ContainerStats", r.container_id.clone(), stats::container(self, r)).await
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        rpc("ListContainerStats", "", stats::list_containers(self, req.into_inner())).await
    }

    async fn pod_sandbox_stats(&self, req: Request<cri::PodSandboxStatsRequest>) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let r = req.into_inner();
        rpc("PodSandboxStats", r.pod_sandbox_id.clone(), stats::sandbox(self, r)).await
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        rpc("ListPodSandboxStats", "", stats::list_sandboxes(self, req.into_inner())).await
    }

    async fn checkpoint_container(
        &self,
        req: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        let r = req.into_inner();
        rpc("CheckpointContainer", r.container_id.clone(), async {
            Err(super::errors::unimplemented("CheckpointContainer: hull does not checkpoint containers"))
        })
        .await
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(&self, req: Request<cri::GetEventsRequest>) -> Result<Response<EventStream>, Status> {
        rpc("GetContainerEvents", "", events::subscribe(self, req.into_inner())).await
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        rpc("ListMetricDescriptors", "", async { Ok(cri::ListMetricDescriptorsResponse::default()) }).await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        rpc("ListPodSandboxMetrics", "", async { Ok(cri::ListPodSandboxMetricsResponse::default()) }).await
    }
}

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(&self, req: Request<cri::ListImagesRequest>) -> Result<Response<cri::ListImagesResponse>, Status> {
        let images = self.images.clone();
        rpc("ListImages", "", images.list(req.into_inner())).await
    }

    async fn image_status(&self, req: Request<cri::ImageStatusRequest>) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let r = req.into_inner();
        let ids = image_name(&r.image);
        let images = self.images.clone();
        rpc("ImageStatus", ids, images.status(r)).await
    }

    async fn pull_image(&self, req: Request<cri::PullImageRequest>) -> Result<Response<cri::PullImageResponse>, Status> {
        let r = req.into_inner();
        let ids = image_name(&r.image);
        let images = self.images.clone();
        rpc("PullImage", ids, images.pull(r)).await
    }

    async fn remove_image(&self, req: Request<cri::RemoveImageRequest>) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let r = req.into_inner();
        let ids = image_name(&r.image);
        let images = self.images.clone();
        rpc("RemoveImage", ids, images.remove(r)).await
    }

    async fn image_fs_info(&self, _req: Request<cri::ImageFsInfoRequest>) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let images = self.images.clone();
        let state_dir = self.config.state_dir.clone();
        rpc("ImageFsInfo", "", images.fs_info(state_dir)).await
    }
}
