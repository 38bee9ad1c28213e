//! `hull daemon`: flags over the TOML config, then the CRI server.
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};

use super::args::Cli;
use crate::cri::config::{DaemonConfig, Overrides};

#[derive(Args, Debug)]
#[command(
    about = "Serve the Kubernetes CRI v1 (RuntimeService, ImageService) on a unix socket",
    long_about = "Serve the Kubernetes CRI v1 (RuntimeService and ImageService) on a unix socket,\n\
so a kubelet (containerRuntimeEndpoint: unix:///run/hull/hull.sock; its cgroupDriver\n\
is taken from --cgroup-driver) or crictl runs pods on hull. Settings come from --config FILE (TOML; every\n\
key has a default, see README) and these flags, which win over the file; the global\n\
--root is the run dir, --image-root the image store, --log and --log-format the log.\n\
SIGTERM or SIGINT: stop serving, finish the RPCs in flight, exit 0; containers keep running."
)]
pub struct DaemonCmd {
    /// TOML config file (socket, state_dir, run_dir, image_root, hosts_dir, cni_conf_dir,
    /// cni_bin_dirs, cni_conf_template, cgroup_driver, seccomp_profile, cdi_spec_dirs, stream_address,
    /// stream_tls_cert, stream_tls_key, log_level, log_format, ...)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The socket to serve on [default: /run/hull/hull.sock]
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Open the socket to this group (mode 0660) instead of root only (0600)
    #[arg(long = "socket-group")]
    pub socket_group: Option<String>,
    /// Records, logs and writable layers [default: /var/lib/hull]
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
    /// Directory of containerd-style REGISTRY/hosts.toml files (mirrors, plain HTTP,
    /// ca, client certificates, skip_verify) [default: /etc/hull/certs.d]
    #[arg(long = "hosts-dir")]
    pub hosts_dir: Option<PathBuf>,
    /// CNI network config directory [default: /etc/cni/net.d]
    #[arg(long = "cni-conf-dir")]
    pub cni_conf_dir: Option<PathBuf>,
    /// CNI plugin directory (repeat for several) [default: /usr/lib/cni, /opt/cni/bin]
    #[arg(long = "cni-bin-dir")]
    pub cni_bin_dirs: Vec<PathBuf>,
    /// A CNI config template (containerd's conf_template: .PodCIDR, .PodCIDRRanges,
    /// .Routes): when the kubelet sends the pod CIDR and the CNI conf dir has no config,
    /// it is rendered there as 10-hull-net.conflist
    #[arg(long = "cni-conf-template")]
    pub cni_conf_template: Option<PathBuf>,
    /// How pod cgroup parents are named, and what RuntimeConfig tells the kubelet:
    /// cgroupfs (/kubepods/burstable/pod<uid>) or systemd (kubepods-burstable-pod<uid>.slice,
    /// placed where systemd would put it) [default: cgroupfs]
    #[arg(long = "cgroup-driver", value_parser = ["cgroupfs", "systemd"])]
    pub cgroup_driver: Option<String>,
    /// A directory of CDI spec files, JSON or YAML (repeat for several; a device in a
    /// later one wins) [default: /etc/cdi, /var/run/cdi]
    #[arg(long = "cdi-spec-dir")]
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// Where the streaming server (the Exec and PortForward URLs) listens, IP:PORT
    /// [default: 127.0.0.1:0, loopback and any port]
    #[arg(long = "stream-address")]
    pub stream_address: Option<String>,
    /// Serve the streaming URLs over TLS with this PEM certificate chain (needs
    /// --stream-tls-key)
    #[arg(long = "stream-tls-cert", requires = "stream_tls_key")]
    pub stream_tls_cert: Option<PathBuf>,
    /// The PEM private key of --stream-tls-cert
    #[arg(long = "stream-tls-key", requires = "stream_tls_cert")]
    pub stream_tls_key: Option<PathBuf>,
    /// error, warn, info, debug or trace [default: info; --debug: debug]
    #[arg(long = "log-level", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: Option<String>,
}

/// A global flag's value when it was given (on the command line or by its
/// environment variable), not defaulted.
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
}

pub fn run(cli: &Cli, cmd: &DaemonCmd, matches: &ArgMatches) -> i32 {
    let flags = Overrides {
        socket: cmd.socket.clone(),
        socket_group: cmd.socket_group.clone(),
        state_dir: cmd.state_dir.clone(),
        run_dir: given(matches, "root").then(|| cli.root.clone()),
        image_root: given(matches, "image_root").then(|| cli.image_root.clone()),
        hosts_dir: cmd.hosts_dir.clone(),
        cni_conf_dir: cmd.cni_conf_dir.clone(),
        cni_bin_dirs: cmd.cni_bin_dirs.clone(),
        cni_conf_template: cmd.cni_conf_template.clone(),
        cgroup_driver: cmd.cgroup_driver.as_deref().and_then(|d| d.parse().ok()),
        cdi_spec_dirs: cmd.cdi_spec_dirs.clone(),
        stream_address: cmd.stream_address.clone(),
        stream_tls_cert: cmd.stream_tls_cert.clone(),
        stream_tls_key: cmd.stream_tls_key.clone(),
        log_level: cmd.log_level.clone().or_else(|| cli.debug.then(|| "debug".to_string())),
        log_format: given(matches, "log_format").then(|| cli.log_format.clone()),
    };
    let result = DaemonConfig::load(cmd.config.as_deref(), &flags)
        .map_err(crate::cri::server::DaemonError::from)
        .and_then(|cfg| {
            crate::cri::server::init_logging(&cfg, cli.log.as_deref())?;
            crate::cri::server::run(cfg)
        });
    match result {
        Ok(()) => 0,
        Err(e) => {
            let msg = crate::cri::errors::message(&e);
            if cli.log.is_some() {
                tracing::error!("{msg}");
            }
            eprintln!("hull daemon: {msg}");
            1
        }
    }
}
