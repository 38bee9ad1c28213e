//! `hull daemon`'s settings: a TOML file (`--config FILE`) whose every key
//! has a default, so the daemon also runs with no file at all, and the
//! command-line flags that win over it.
//!
//! ```toml
//! socket = "/run/hull/hull.sock"        # the CRI endpoint
//! socket_group = "kube"                 # optional: mode 0660 and this group (else 0600, root only)
//! state_dir = "/var/lib/hull"           # records, logs, writable layers
//! run_dir = "/run/hull"                 # runtime files (OCI state, exit records, netns pins)
//! image_root = "/var/lib/hull/images"   # default: <state_dir>/images
//! hosts_dir = "/etc/hull/certs.d"       # <registry>/hosts.toml: mirrors, plain HTTP, TLS
//! insecure_registries = []              # host[:port] reached over plain HTTP
//! cni_conf_dir = "/etc/cni/net.d"
//! cni_bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
//! cni_conf_template = ""                # optional: rendered with the pod CIDR when no CNI config exists
//! cgroup_driver = "cgroupfs"            # or systemd: pod cgroup parents are slices
//! seccomp_profile = ""                  # RuntimeDefault: this OCI seccomp JSON; empty: hull's built-in
//! cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]  # CDI spec files; a later dir's device wins
//! log_level = "info"                    # error, warn, info, debug, trace
//! log_format = "text"                   # or json
//! shutdown_timeout_seconds = 10         # how long SIGTERM waits for RPCs in flight
//! ```
//!
//! `stream_address` is where the streaming server (the URLs Exec and
//! PortForward return) listens: default `127.0.0.1:0` (loopback, any port),
//! as containerd's; the kubelet connects to it from the same node.
//! `stream_tls_cert` and `stream_tls_key` (PEM files, both or neither)
//! make it serve TLS, and its URLs `https://`.
//!
//! `cni_conf_template` is containerd's `conf_template`: when the kubelet
//! sends the node's pod CIDR and the CNI conf dir has no config, the
//! template is rendered into it (see [`super::cni_template`]).
//! `cgroup_driver` is what RuntimeConfig answers the kubelet (which then
//! uses the same driver): `cgroupfs`, pod cgroup parents are paths
//! (`/kubepods/burstable/pod<uid>`); `systemd`, they are slices
//! (`kubepods-burstable-pod<uid>.slice`), placed where systemd would put
//! them (no systemd is asked; see [`crate::cgroups::systemd`]).
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The longest path a unix socket can be bound at (`sun_path` is 108
/// bytes with its terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;
/// Upper bound for `shutdown_timeout_seconds`.
const MAX_SHUTDOWN_TIMEOUT: u64 = 3600;

pub const DEFAULT_SOCKET: &str = "/run/hull/hull.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/hull";
pub const DEFAULT_RUN_DIR: &str = "/run/hull";
pub const DEFAULT_HOSTS_DIR: &str = "/etc/hull/certs.d";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    pub socket: PathBuf,
    pub socket_group: Option<String>,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    /// None: `<state_dir>/images`.
    pub image_root: Option<PathBuf>,
    pub hosts_dir: PathBuf,
    pub insecure_registries: Vec<String>,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    /// A CNI config template rendered with the pod CIDR (containerd's
    /// `conf_template`).
    pub cni_conf_template: Option<PathBuf>,
    pub cgroup_driver: CgroupDriver,
    /// The profile a RuntimeDefault seccomp request gets; None: hull's
    /// built-in default profile.
    pub seccomp_profile: Option<PathBuf>,
    /// Where CDI spec files are (a device in a later directory replaces
    /// one of the same name in an earlier one).
    pub cdi_spec_dirs: Vec<PathBuf>,
    pub stream_address: Option<String>,
    /// The streaming server's certificate chain and key (PEM); both or
    /// neither: with them it serves TLS.
    pub stream_tls_cert: Option<PathBuf>,
    pub stream_tls_key: Option<PathBuf>,
    pub log_level: String,
    pub log_format: String,
    pub shutdown_timeout_seconds: u64,
}

impl Default for DaemonConfig {
    fn default() -> DaemonConfig {
        let cni = crate::network::CniOptions::default();
        DaemonConfig {
            socket: DEFAULT_SOCKET.into(),
            socket_group: None,
            state_dir: DEFAULT_STATE_DIR.into(),
            run_dir: DEFAULT_RUN_DIR.into(),
            image_root: None,
            hosts_dir: DEFAULT_HOSTS_DIR.into(),
            insecure_registries: Vec::new(),
            cni_conf_dir: cni.conf_dir,
            cni_bin_dirs: cni.plugin_dirs,
            cni_conf_template: None,
            cgroup_driver: CgroupDriver::Cgroupfs,
            seccomp_profile: None,
            cdi_spec_dirs: crate::runtime::cdi::DEFAULT_SPEC_DIRS.iter().map(PathBuf::from).collect(),
            stream_address: None,
            stream_tls_cert: None,
            stream_tls_key: None,
            log_level: "info".into(),
            log_format: "text".into(),
            shutdown_timeout_seconds: 10,
        }
    }
}

/// How pod cgroup parents are named (the kubelet's `cgroupDriver`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// Paths: `/kubepods/besteffort/pod<uid>`.
    #[default]
    Cgroupfs,
    /// Slices: `kubepods-besteffort-pod<uid>.slice`.
    Systemd,
}

impl std::str::FromStr for CgroupDriver {
    type Err = String;
    fn from_str(s: &str) -> Result<CgroupDriver, String> {
        match s {
            "cgroupfs" => Ok(CgroupDriver::Cgroupfs),
            "systemd" => Ok(CgroupDriver::Systemd),
            _ => Err(format!("{s:?}: expected cgroupfs or systemd")),
        }
    }
}

/// Settings given on the command line; each one set replaces the file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub socket: Option<PathBuf>,
    pub socket_group: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub image_root: Option<PathBuf>,
    pub hosts_dir: Option<PathBuf>,
    pub cni_conf_dir: Option<PathBuf>,
    /// Empty: not given.
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cni_conf_template: Option<PathBuf>,
    pub cgroup_driver: Option<CgroupDriver>,
    /// Empty: not given.
    pub cdi_spec_dirs: Vec<PathBuf>,
    pub stream_address: Option<String>,
    pub stream_tls_cert: Option<PathBuf>,
    pub stream_tls_key: Option<PathBuf>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, message: message.into() }
}

impl DaemonConfig {
    /// The file's settings (or the defaults without one), then the flags.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<DaemonConfig, ConfigError> {
        let mut c = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
                Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })?
            }
            None => DaemonConfig::default(),
        };
        c.apply(flags);
        c.validate()?;
        Ok(c)
    }

    /// Parse the TOML text; unknown keys are errors (a typo must not
    /// silently leave a default in place).
    pub fn parse(text: &str) -> Result<DaemonConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().to_string())
    }

    fn apply(&mut self, f: &Overrides) {
        let set = |slot: &mut PathBuf, v: &Option<PathBuf>| {
            if let Some(v) = v {
                *slot = v.clone();
            }
        };
        set(&mut self.socket, &f.socket);
        set(&mut self.state_dir, &f.state_dir);
        set(&mut self.run_dir, &f.run_dir);
        set(&mut self.hosts_dir, &f.hosts_dir);
        set(&mut self.cni_conf_dir, &f.cni_conf_dir);
        if let Some(d) = f.cgroup_driver {
            self.cgroup_driver = d;
        }
        for (slot, v) in [(&mut self.socket_group, &f.socket_group), (&mut self.stream_address, &f.stream_address)] {
            if v.is_some() {
                slot.clone_from(v);
            }
        }
        for (slot, v) in [
            (&mut self.image_root, &f.image_root),
            (&mut self.cni_conf_template, &f.cni_conf_template),
            (&mut self.stream_tls_cert, &f.stream_tls_cert),
            (&mut self.stream_tls_key, &f.stream_tls_key),
        ] {
            if v.is_some() {
                slot.clone_from(v);
            }
        }
        if !f.cni_bin_dirs.is_empty() {
            self.cni_bin_dirs = f.cni_bin_dirs.clone();
        }
        if !f.cdi_spec_dirs.is_empty() {
            self.cdi_spec_dirs = f.cdi_spec_dirs.clone();
        }
        if let Some(l) = &f.log_level {
            self.log_level = l.clone();
        }
        if let Some(l) = &f.log_format {
            self.log_format = l.clone();
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let len = self.socket.as_os_str().len();
        if !self.socket.is_absolute() {
            return Err(invalid("socket", format!("{} is not an absolute path", self.socket.display())));
        }
        if len > MAX_SOCKET_PATH {
            return Err(invalid(
                "socket",
                format!("{} is {len} bytes long; a unix socket path has at most {MAX_SOCKET_PATH}", self.socket.display()),
            ));
        }
        let dirs: [(&'static str, &Path); 5] = [
            ("state_dir", &self.state_dir),
            ("run_dir", &self.run_dir),
            ("image_root", self.image_root.as_deref().unwrap_or(Path::new("/"))),
            ("hosts_dir", &self.hosts_dir),
            ("cni_conf_dir", &self.cni_conf_dir),
        ];
        for (field, d) in dirs {
            if !d.is_absolute() {
                return Err(invalid(field, format!("{} is not an absolute path", d.display())));
            }
        }
        if self.cni_bin_dirs.iter().any(|d| !d.is_absolute()) {
            return Err(invalid("cni_bin_dirs", "every directory must be an absolute path"));
        }
        if self.cdi_spec_dirs.iter().any(|d| !d.is_absolute()) {
            return Err(invalid("cdi_spec_dirs", "every directory must be an absolute path"));
        }
        if let Some(g) = &self.socket_group {
            if g.is_empty() {
                return Err(invalid("socket_group", "empty group name"));
            }
        }
        if let Some(a) = &self.stream_address {
            if a.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid("stream_address", format!("{a:?}: expected an IP address and port, e.g. 127.0.0.1:0")));
            }
        }
        match (&self.stream_tls_cert, &self.stream_tls_key) {
            (Some(_), None) => return Err(invalid("stream_tls_key", "missing: stream_tls_cert needs its key")),
            (None, Some(_)) => return Err(invalid("stream_tls_cert", "missing: stream_tls_key needs its certificate")),
            _ => {}
        }
        let files = [
            ("seccomp_profile", &self.seccomp_profile),
            ("cni_conf_template", &self.cni_conf_template),
            ("stream_tls_cert", &self.stream_tls_cert),
            ("stream_tls_key", &self.stream_tls_key),
        ];
        for (field, p) in files {
            if let Some(p) = p.as_ref().filter(|p| !p.is_absolute()) {
                return Err(invalid(field, format!("{} is not an absolute path", p.display())));
            }
        }
        if !matches!(self.log_level.as_str(), "error" | "warn" | "info" | "debug" | "trace") {
            return Err(invalid("log_level", format!("{:?}: expected error, warn, info, debug or trace", self.log_level)));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(invalid("log_format", format!("{:?}: expected text or json", self.log_format)));
        }
        if self.shutdown_timeout_seconds > MAX_SHUTDOWN_TIMEOUT {
            return Err(invalid(
                "shutdown_timeout_seconds",
                format!("{} is more than {MAX_SHUTDOWN_TIMEOUT}", self.shutdown_timeout_seconds),
            ));
        }
        Ok(())
    }

    /// The streaming server's address (checked by validate).
    pub fn stream_addr(&self) -> std::net::SocketAddr {
        self.stream_address
            .as_deref()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn image_root(&self) -> PathBuf {
        self.image_root.clone().unwrap_or_else(|| self.state_dir.join("images"))
    }

    pub fn cni_options(&self) -> crate::network::CniOptions {
        crate::network::CniOptions { conf_dir: self.cni_conf_dir.clone(), plugin_dirs: self.cni_bin_dirs.clone(), ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_a_file() {
        let c = DaemonConfig::load(None, &Overrides::default()).unwrap();
        assert_eq!(c.socket, Path::new("/run/hull/hull.sock"));
        assert_eq!(c.state_dir, Path::new("/var/lib/hull"));
        assert_eq!(c.run_dir, Path::new("/run/hull"));
        assert_eq!(c.image_root(), Path::new("/var/lib/hull/images"));
        assert_eq!(c.cni_conf_dir, Path::new("/etc/cni/net.d"));
        assert_eq!(c.log_level, "info");
    }

    #[test]
    fn file_then_flags() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("hull.toml");
        std::fs::write(
            &f,
            "socket = \"/tmp/a.sock\"\nstate_dir = \"/srv/hull\"\ncni_bin_dirs = [\"/x\"]\nlog_format = \"json\"\nsocket_group = \"kube\"\n",
        )
        .unwrap();
        let c = DaemonConfig::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!((c.socket.as_path(), c.log_format.as_str()), (Path::new("/tmp/a.sock"), "json"));
        assert_eq!(c.image_root(), Path::new("/srv/hull/images"), "the image root follows the state dir");
        assert_eq!(c.cni_bin_dirs, vec![PathBuf::from("/x")]);
        let flags = Overrides {
            socket: Some("/tmp/b.sock".into()),
            image_root: Some("/img".into()),
            cni_bin_dirs: vec!["/y".into(), "/z".into()],
            log_level: Some("debug".into()),
            ..Default::default()
        };
        let c = DaemonConfig::load(Some(&f), &flags).unwrap();
        assert_eq!(c.socket, Path::new("/tmp/b.sock"));
        assert_eq!(c.image_root(), Path::new("/img"));
        assert_eq!(c.cni_bin_dirs.len(), 2);
        assert_eq!((c.log_level.as_str(), c.socket_group.as_deref()), ("debug", Some("kube")));
    }

    #[test]
    fn bad_settings_name_the_field() {
        let err = DaemonConfig::parse("sokcet = \"/a\"").unwrap_err();
        assert!(err.contains("sokcet"), "{err}");
        let err = DaemonConfig::parse("shutdown_timeout_seconds = \"x\"").unwrap_err();
        assert!(err.contains("shutdown_timeout_seconds"), "{err}");
        let check = |c: DaemonConfig, field: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
        };
        let long = format!("/{}", "s".repeat(120));
        check(DaemonConfig { socket: long.into(), ..Default::default() }, "socket");
        check(DaemonConfig { socket: "rel.sock".into(), ..Default::default() }, "socket");
        check(DaemonConfig { state_dir: "var".into(), ..Default::default() }, "state_dir");
        check(DaemonConfig { log_level: "loud".into(), ..Default::default() }, "log_level");
        check(DaemonConfig { log_format: "xml".into(), ..Default::default() }, "log_format");
        check(DaemonConfig { stream_address: Some("localhost".into()), ..Default::default() }, "stream_address");
        check(DaemonConfig { shutdown_timeout_seconds: 1 << 40, ..Default::default() }, "shutdown_timeout_seconds");
        check(DaemonConfig { stream_tls_cert: Some("/c.pem".into()), ..Default::default() }, "stream_tls_key");
        check(DaemonConfig { stream_tls_key: Some("/k.pem".into()), ..Default::default() }, "stream_tls_cert");
        let rel = DaemonConfig { stream_tls_cert: Some("c.pem".into()), stream_tls_key: Some("/k.pem".into()), ..Default::default() };
        check(rel, "stream_tls_cert");
        check(DaemonConfig { cni_conf_template: Some("t.json".into()), ..Default::default() }, "cni_conf_template");
        check(DaemonConfig { cdi_spec_dirs: vec!["cdi".into()], ..Default::default() }, "cdi_spec_dirs");
        assert_eq!(DaemonConfig::default().cdi_spec_dirs, [PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")]);
        assert_eq!(DaemonConfig::parse("cdi_spec_dirs = [\"/x\"]\n").unwrap().cdi_spec_dirs, [PathBuf::from("/x")]);
        let err = DaemonConfig::parse("cgroup_driver = \"systemd-ish\"").unwrap_err();
        assert!(err.contains("cgroup_driver"), "{err}");
    }

    #[test]
    fn cgroup_driver_and_template_from_the_file_and_flags() {
        let c = DaemonConfig::parse("cgroup_driver = \"systemd\"\ncni_conf_template = \"/etc/hull/net.tmpl\"\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.cgroup_driver, CgroupDriver::Systemd);
        assert_eq!(DaemonConfig::default().cgroup_driver, CgroupDriver::Cgroupfs);
        let mut c2 = c.clone();
        c2.apply(&Overrides { cgroup_driver: Some(CgroupDriver::Cgroupfs), cni_conf_template: Some("/t2".into()), ..Default::default() });
        assert_eq!((c2.cgroup_driver, c2.cni_conf_template.as_deref()), (CgroupDriver::Cgroupfs, Some(Path::new("/t2"))));
        assert_eq!("systemd".parse::<CgroupDriver>(), Ok(CgroupDriver::Systemd));
        assert!("Systemd".parse::<CgroupDriver>().is_err());
    }

    #[test]
    fn stream_settings_from_the_file_and_flags() {
        let c =
            DaemonConfig::parse("stream_address = \"127.0.0.1:9\"\nstream_tls_cert = \"/c.pem\"\nstream_tls_key = \"/k.pem\"\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.stream_addr(), "127.0.0.1:9".parse().unwrap());
        let mut c2 = c.clone();
        c2.apply(&Overrides { stream_address: Some("127.0.0.1:10".into()), stream_tls_key: Some("/k2.pem".into()), ..Default::default() });
        assert_eq!(c2.stream_addr(), "127.0.0.1:10".parse().unwrap());
        assert_eq!((c2.stream_tls_cert.as_deref(), c2.stream_tls_key.as_deref()), (Some(Path::new("/c.pem")), Some(Path::new("/k2.pem"))));
    }
}
