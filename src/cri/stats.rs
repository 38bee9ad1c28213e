//! ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats:
//! the runtime layer's cgroup numbers as CRI messages, CPU nano-cores from
//! the previous sample of the same container, and a pod's network counters
//! read from its network namespace (the holder's /proc/PID/net/dev).
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use k8s_cri::v1 as cri;
use tonic::Status;

use super::container::{container_filter, container_id};
use super::convert::{hash, nanos};
use super::errors::status as to_status;
use super::sandbox::{id_matches, sandbox_id};
use super::service::{blocking, Cri};
use crate::runtime as rt;

fn u(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

/// The last CPU sample per container or sandbox: (time, core-nanoseconds).
#[derive(Default)]
pub struct CpuSamples(Mutex<HashMap<String, (SystemTime, u64)>>);

impl CpuSamples {
    /// Nano-cores since the previous sample (None for the first one).
    fn rate(&self, id: &str, at: SystemTime, total: u64) -> Option<u64> {
        let mut m = self.0.lock().ok()?;
        let prev = m.insert(id.to_string(), (at, total));
        let (t0, c0) = prev?;
        let dt = at.duration_since(t0).ok()?.as_nanos();
        if dt == 0 || total < c0 {
            return None;
        }
        Some(((total - c0) as u128 * 1_000_000_000 / dt).min(u64::MAX as u128) as u64)
    }

    /// Forget what no longer exists.
    fn retain(&self, live: &std::collections::HashSet<String>) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|k, _| live.contains(k));
        }
    }
}

fn cpu_and_memory(cri: &Cri, s: &rt::ContainerStats) -> (cri::CpuUsage, cri::MemoryUsage) {
    let at = s.timestamp.unwrap_or_else(SystemTime::now);
    let ts = nanos(at);
    let cpu = cri::CpuUsage {
        timestamp: ts,
        usage_core_nano_seconds: u(s.cpu_usage_core_nanoseconds),
        usage_nano_cores: cri.cpu_samples.rate(&s.id, at, s.cpu_usage_core_nanoseconds).and_then(u),
    };
    let memory = cri::MemoryUsage {
        timestamp: ts,
        working_set_bytes: u(s.memory_working_set_bytes),
        available_bytes: None,
        usage_bytes: u(s.memory_usage_bytes),
        rss_bytes: u(s.memory_rss_bytes),
        page_faults: u(s.memory_page_faults),
        major_page_faults: u(s.memory_major_page_faults),
    };
    (cpu, memory)
}

fn container_message(cri: &Cri, c: &rt::ContainerStatus, s: &rt::ContainerStats) -> cri::ContainerStats {
    let (cpu, memory) = cpu_and_memory(cri, s);
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: c.id.to_string(),
            metadata: Some(cri::ContainerMetadata { name: c.metadata.name.clone(), attempt: c.metadata.attempt }),
            labels: hash(&c.labels),
            annotations: hash(&c.annotations),
        }),
        cpu: Some(cpu),
        memory: Some(memory),
        writable_layer: writable_layer(cri, &c.id),
        swap: swap(s, host_swap_total()),
    }
}

/// The host's swap size (/proc/meminfo SwapTotal), which bounds what an
/// unlimited cgroup can swap.
fn host_swap_total() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("SwapTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb.saturating_mul(1024))
}

/// The CRI's swap numbers: usage, and available = limit - usage, the limit
/// being the cgroup's, or the host's swap when the cgroup has none.
fn swap(s: &rt::ContainerStats, host_total: u64) -> Option<cri::SwapUsage> {
    let sw = s.swap?;
    let limit = sw.limit.map_or(host_total, |l| l.min(host_total));
    Some(cri::SwapUsage {
        timestamp: nanos(s.timestamp.unwrap_or_else(SystemTime::now)),
        swap_available_bytes: u(limit.saturating_sub(sw.usage)),
        swap_usage_bytes: u(sw.usage),
    })
}

/// The container's writable layer: its upper directory's bytes and inodes.
fn writable_layer(cri: &Cri, id: &rt::ContainerId) -> Option<cri::FilesystemUsage> {
    let (dir, usage) = cri.runtime.writable_layer_usage(id)?;
    Some(cri::FilesystemUsage {
        timestamp: nanos(SystemTime::now()),
        fs_id: Some(cri::FilesystemIdentifier { mountpoint: dir.display().to_string() }),
        used_bytes: u(usage.bytes),
        inodes_used: u(usage.inodes),
    })
}

pub async fn container(cri: &Cri, req: cri::ContainerStatsRequest) -> Result<cri::ContainerStatsResponse, Status> {
    let id = container_id("container_id", &req.container_id)?;
    let cri2 = cri.clone();
    blocking(move || {
        let c = cri2.runtime.container_status(&id).map_err(to_status)?;
        let s = cri2.runtime.container_stats(&id).map_err(to_status)?;
        Ok(cri::ContainerStatsResponse { stats: Some(container_message(&cri2, &c, &s)) })
    })
    .await
}

/// Stats of the containers `filter` selects that have any (the runtime
/// layer skips those without a cgroup).
fn containers_stats(cri: &Cri, filter: &rt::ContainerFilter, id: &str, sandbox: &str) -> Result<Vec<cri::ContainerStats>, Status> {
    let statuses: HashMap<String, rt::ContainerStatus> = cri
        .runtime
        .list_containers(filter)
        .map_err(to_status)?
        .into_iter()
        .filter(|c| id_matches(id, c.id.as_str()) && id_matches(sandbox, c.sandbox_id.as_str()))
        .map(|c| (c.id.to_string(), c))
        .collect();
    let stats = cri.runtime.list_container_stats(filter).map_err(to_status)?;
    Ok(stats.iter().filter_map(|s| statuses.get(&s.id).map(|c| container_message(cri, c, s))).collect())
}

pub async fn list_containers(cri: &Cri, req: cri::ListContainerStatsRequest) -> Result<cri::ListContainerStatsResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let Some(filter) = container_filter(&f.id, &f.pod_sandbox_id, f.label_selector) else {
        return Ok(cri::ListContainerStatsResponse::default());
    };
    let cri2 = cri.clone();
    blocking(move || {
        let stats = containers_stats(&cri2, &filter, &f.id, &f.pod_sandbox_id)?;
        if f.id.is_empty() && f.pod_sandbox_id.is_empty() {
            let mut live: std::collections::HashSet<String> =
                stats.iter().filter_map(|s| s.attributes.as_ref().map(|a| a.id.clone())).collect();
            if let Ok(sandboxes) = cri2.runtime.list_sandboxes(&rt::SandboxFilter::default()) {
                live.extend(sandboxes.iter().map(|s| s.id.to_string()));
            }
            cri2.cpu_samples.retain(&live);
        }
        Ok(cri::ListContainerStatsResponse { stats })
    })
    .await
}

/// Interface counters of the network namespace `pid` is in, without lo.
fn network_usage(pid: i32) -> Option<cri::NetworkUsage> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    let mut interfaces = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if name == "lo" || f.len() < 16 {
            continue;
        }
        interfaces.push(cri::NetworkInterfaceUsage {
            name: name.to_string(),
            rx_bytes: u(f[0]),
            rx_errors: u(f[2]),
            tx_bytes: u(f[8]),
            tx_errors: u(f[10]),
        });
    }
    let default_interface = interfaces.iter().find(|i| i.name == "eth0").or(interfaces.first()).cloned();
    Some(cri::NetworkUsage { timestamp: nanos(SystemTime::now()), default_interface, interfaces })
}

fn sandbox_message(cri: &Cri, s: &rt::SandboxStatus) -> Result<cri::PodSandboxStats, Status> {
    let stats = cri.runtime.sandbox_stats(&s.id).map_err(to_status)?;
    let (cpu, memory) = cpu_and_memory(cri, &rt::ContainerStats { id: s.id.to_string(), ..stats.clone() });
    let filter = rt::ContainerFilter { sandbox_id: Some(s.id.clone()), ..Default::default() };
    let containers = containers_stats(cri, &filter, "", "")?;
    let network = s
        .holder_pid
        .filter(|_| s.namespace_options.network == rt::NamespaceMode::Pod)
        .and_then(network_usage);
    Ok(cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: s.id.to_string(),
            metadata: Some(cri::PodSandboxMetadata {
                name: s.metadata.name.clone(),
                uid: s.metadata.uid.clone(),
                namespace: s.metadata.namespace.clone(),
                attempt: s.metadata.attempt,
            }),
            labels: hash(&s.labels),
            annotations: hash(&s.annotations),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cpu),
            memory: Some(memory),
            network,
            process: Some(cri::ProcessUsage { timestamp: nanos(SystemTime::now()), process_count: u(stats.pids) }),
            containers,
        }),
        windows: None,
    })
}

pub async fn sandbox(cri: &Cri, req: cri::PodSandboxStatsRequest) -> Result<cri::PodSandboxStatsResponse, Status> {
    let id = sandbox_id("pod_sandbox_id", &req.pod_sandbox_id)?;
    let cri2 = cri.clone();
    blocking(move || {
        let s = cri2.runtime.sandbox_status(&id).map_err(to_status)?;
        Ok(cri::PodSandboxStatsResponse { stats: Some(sandbox_message(&cri2, &s)?) })
    })
    .await
}

pub async fn list_sandboxes(cri: &Cri, req: cri::ListPodSandboxStatsRequest) -> Result<cri::ListPodSandboxStatsResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let mut filter = rt::SandboxFilter { label_selector: super::convert::btree(f.label_selector), ..Default::default() };
    if f.id.len() == rt::id::ID_LEN {
        match rt::SandboxId::parse(&f.id) {
            Ok(id) => filter.id = Some(id),
            Err(_) => return Ok(cri::ListPodSandboxStatsResponse::default()),
        }
    }
    let cri2 = cri.clone();
    blocking(move || {
        let mut stats = Vec::new();
        for s in cri2.runtime.list_sandboxes(&filter).map_err(to_status)? {
            // Only sandboxes with a cgroup have numbers; one stopped or
            // removed meanwhile is skipped.
            if id_matches(&f.id, s.id.as_str()) && s.state == rt::SandboxState::Ready {
                match sandbox_message(&cri2, &s) {
                    Ok(m) => stats.push(m),
                    Err(e) if e.code() == tonic::Code::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(cri::ListPodSandboxStatsResponse { stats })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn swap_available_is_the_limit_less_usage() {
        let st = |limit| rt::ContainerStats { swap: Some(crate::cgroups::SwapUsage { usage: 100, limit }), ..Default::default() };
        let got = swap(&st(Some(1000)), 1 << 20).unwrap();
        assert_eq!((got.swap_usage_bytes.unwrap().value, got.swap_available_bytes.unwrap().value), (100, 900));
        // unlimited: the host's swap bounds it
        let got = swap(&st(None), 600).unwrap();
        assert_eq!(got.swap_available_bytes.unwrap().value, 500);
        assert!(swap(&rt::ContainerStats::default(), 600).is_none(), "no swap accounting");
    }

    #[test]
    fn nano_cores_from_two_samples() {
        let s = CpuSamples::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(s.rate("a", t0, 1_000), None);
        // half a core for two seconds
        assert_eq!(s.rate("a", t0 + Duration::from_secs(2), 1_000 + 1_000_000_000), Some(500_000_000));
        assert_eq!(s.rate("a", t0 + Duration::from_secs(2), 5), None, "counter went back");
    }
}
