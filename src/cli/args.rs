//! Flags and commands, named as runc names them.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "hull",
    version = concat!("version ", env!("CARGO_PKG_VERSION"), "\nspec: 1.2.1"),
    about = "hull: an OCI container runtime (runc-compatible command line)",
    long_about = "hull runs OCI bundles with the same commands, flags and JSON as runc,\nso containerd, podman or docker can use it in runc's place. It also runs\nKubernetes Pod manifests without a kubelet (`hull pod`) and keeps an image\nstore (`hull image`)."
)]
pub struct Cli {
    /// Directory for container state (one subdirectory per container)
    #[arg(long, global = true, default_value = "/run/hull")]
    pub root: PathBuf,
    /// Write log messages to this file instead of stderr
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long = "log-format", global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Log debug messages
    #[arg(long, global = true)]
    pub debug: bool,
    /// Take linux.cgroupsPath as systemd's slice:prefix:name; hull maps it onto
    /// cgroupfs (/<slice path>/<prefix>-<name>.scope) and creates the
    /// directories itself, without talking to systemd
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Directory of the image store (`hull image`)
    #[arg(long = "image-root", global = true, env = "HULL_IMAGE_ROOT", default_value = crate::image::store::DEFAULT_ROOT)]
    pub image_root: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Path to the bundle (the directory holding config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container init's pid to this file
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Use chroot instead of pivot_root (for ramdisk roots)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not give the container a session keyring of its own
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many extra fds (3, 4, ...) to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
}

#[derive(Args, Debug, Clone)]
pub struct CreateCmd {
    /// The container's id (unique under --root)
    pub id: String,
    #[command(flatten)]
    pub common: CreateArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RunCmd {
    /// The container's id (unique under --root)
    pub id: String,
    #[command(flatten)]
    pub common: CreateArgs,
    /// Start the container and return without waiting for it
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ExecCmd {
    /// The id of the running container to run the process in
    pub id: String,
    /// The command and its arguments (unless --process is given)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// A process.json describing the process to run
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Return once the process has started, without waiting for it
    #[arg(short, long)]
    pub detach: bool,
    /// Write the new process's pid to this file
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Working directory in the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Environment variables to add (KEY=VALUE)
    #[arg(short, long)]
    pub env: Vec<String>,
    /// UID[:GID] to run as
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional group ids
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Unix socket that receives the pty master when --tty is given
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Add a capability to the bounding, effective, permitted and inheritable sets
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// AppArmor profile for the process
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux label for the process
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// Pass this many extra fds (3, 4, ...) to the process
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container: set it up, with its program waiting for `start`
    Create(CreateCmd),
    /// Start the program of a created container
    Start {
        /// The id of the created container to start
        id: String,
    },
    /// Create and start a container, and wait for it unless --detach
    Run(RunCmd),
    /// Print a container's state as JSON
    State {
        /// The container's id
        id: String,
    },
    /// Send a signal (default SIGTERM) to a container's init, or to all its processes
    Kill {
        /// The container's id
        id: String,
        /// Signal name or number (SIGKILL, KILL, 9); default SIGTERM
        signal: Option<String>,
        /// Signal every process in the container's cgroup, not only its init
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container and everything it owns
    Delete {
        /// The container's id
        id: String,
        /// Kill a running container first
        #[arg(short, long)]
        force: bool,
    },
    /// List containers
    List {
        /// Output format: table or json
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Print only the ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the processes running in a container
    Ps {
        /// The container's id
        id: String,
        /// Output format: table (ps(1)'s) or json (the pids)
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Arguments for ps(1) (default -ef)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Run a new process in a running container
    Exec(ExecCmd),
    /// Freeze all processes of a container
    Pause {
        /// The id of the running container to freeze
        id: String,
    },
    /// Thaw a paused container
    Resume {
        /// The id of the paused container to thaw
        id: String,
    },
    /// Write a default config.json
    Spec {
        /// Directory to write config.json in (default: the current one)
        #[arg(short, long)]
        bundle: Option<PathBuf>,
        /// A config for running without root (user namespace)
        #[arg(long)]
        rootless: bool,
        /// Add hull's built-in default seccomp profile (containerd's
        /// RuntimeDefault in effect) for the config's capabilities
        #[arg(long = "seccomp-default")]
        seccomp_default: bool,
    },
    /// Print the features this build supports, as JSON
    Features,
    /// Change a running container's resource limits
    Update(UpdateCmd),
    /// Run Kubernetes Pod manifests without a kubelet
    #[command(long_about = "Run Kubernetes Pod manifests without a kubelet.\n\n\
Pods' records, logs and emptyDirs are kept under the state directory (--state-dir),\n\
their runtime files (OCI state, exit records, locks, FIFOs, netns pins) under --root.\n\
A root remembers the state directory it was first used with, so later commands\n\
need not repeat it; a command that pairs either with another one is refused.")]
    Pod(PodArgs),
    /// Internal: the per-container monitor (started by the pod layer)
    #[command(hide = true)]
    Monitor {
        id: String,
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long = "log-path")]
        log_path: PathBuf,
        #[arg(long = "exit-file")]
        exit_file: PathBuf,
        #[arg(long = "ready-fd")]
        ready_fd: i32,
        /// Leave the container created; `hull start` (or the runtime layer) starts it
        #[arg(long = "hold-created")]
        hold_created: bool,
        /// Hold the container's stdin open on a pipe for attaching clients
        #[arg(long)]
        stdin: bool,
        /// Close the container's stdin when the first client that brought stdin is done
        #[arg(long = "stdin-once")]
        stdin_once: bool,
        /// The container has a terminal (process.terminal): keep its pty master
        #[arg(long)]
        tty: bool,
        /// Serve attaching clients on this unix socket (made root-only)
        #[arg(long = "attach-socket")]
        attach_socket: Option<PathBuf>,
    },
    /// Pod networking by hand: CNI add/del/check, pinned network namespaces
    Network(super::network::NetworkCmd),
    /// Images: pull, import, export, ls, inspect, rm, prune, df, mount, bundle
    Image(crate::image::cli::ImageCmd),
    /// Serve the Kubernetes CRI v1 on a unix socket (for a kubelet or crictl)
    Daemon(super::daemon::DaemonCmd),
    /// Print a container's stats every interval and its OOM events, as JSON lines
    Events {
        /// The container's id
        id: String,
        /// Print the stats once and exit
        #[arg(long)]
        stats: bool,
        /// Time between stats (Go duration: 5s, 500ms, 1m)
        #[arg(long, default_value = "5s")]
        interval: String,
    },
}

#[derive(Args, Debug)]
pub struct PodArgs {
    /// Where pods' records, logs and emptyDirs are kept [default: the one --root was
    /// used with, else /var/lib/hull]
    #[arg(long = "state-dir", global = true, env = "HULL_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: PodCmd,
}

#[derive(Subcommand, Debug)]
pub enum PodCmd {
    /// Run a Pod manifest (YAML or JSON file, or - for stdin); `image:` is an
    /// image in hull's store, or a local rootfs directory by absolute path
    Run {
        /// The manifest: a YAML or JSON file, or - for stdin
        file: String,
        /// The pod's namespace (default: the manifest's, else `default`)
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Base of the restart back-off (kubelet: 10000 ms, doubling to 5 min; at most an hour)
        #[arg(long = "backoff-base-ms", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
        backoff_base_ms: u64,
        /// How long to wait for the containers to start (seconds)
        #[arg(long, default_value_t = 60)]
        wait: u64,
        /// CNI network config directory (the first config in it is used)
        #[arg(long = "cni-conf-dir", default_value = "/etc/cni/net.d")]
        cni_conf_dir: PathBuf,
        /// CNI plugin directories
        #[arg(long = "cni-bin-dir", default_values = ["/usr/lib/cni", "/opt/cni/bin"])]
        cni_bin_dirs: Vec<PathBuf>,
    },
    /// List the pods of a namespace
    Ls {
        /// The pod's namespace
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Show a pod's containers: state, restarts, exit codes, reasons
    Ps {
        /// The pod's name (metadata.name)
        name: String,
        /// The pod's namespace
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// table, or json: the pod's record with its sandbox's addresses and holder
        #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Print a container's log
    Logs {
        /// The pod's name (metadata.name)
        name: String,
        /// The pod's namespace
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The container (default: the first app container)
        #[arg(short, long)]
        container: Option<String>,
        /// Keep printing new lines until the container ends
        #[arg(short, long)]
        follow: bool,
    },
    /// Run a command in a container of the pod (-it: an interactive terminal)
    Exec {
        /// The pod's name (metadata.name)
        name: String,
        /// The pod's namespace
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The container (default: the first app container)
        #[arg(short, long)]
        container: Option<String>,
        /// Pass stdin to the command (without it, stdin is /dev/null)
        #[arg(short = 'i', long)]
        stdin: bool,
        /// A terminal for the command: ours goes raw while it runs and its size
        /// follows ours (SIGWINCH)
        #[arg(short = 't', long)]
        tty: bool,
        /// The command and its arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Forward a local port to a port in the pod's network namespace (listens on
    /// 127.0.0.1 until interrupted)
    #[command(name = "port-forward")]
    PortForward {
        /// The pod's name (metadata.name)
        name: String,
        /// LOCAL:REMOTE, PORT (the same both sides) or :REMOTE (any free local port;
        /// the port taken is printed)
        ports: String,
        /// The pod's namespace
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Attach to the running process of a container of the pod (its stdin,
    /// when the container has `stdin: true`, and its output; with `tty: true`
    /// our terminal goes raw and its size follows ours). Detach: end our
    /// input (Ctrl-D without a tty) or interrupt.
    Attach {
        /// The pod's name (metadata.name)
        name: String,
        /// The pod's namespace
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The container (default: the first app container)
        #[arg(short, long)]
        container: Option<String>,
    },
    /// Stop the pod's containers (SIGTERM, grace period, SIGKILL)
    Stop {
        /// The pod's name (metadata.name)
        name: String,
        /// The pod's namespace
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Stop and remove the pod and everything it made
    Rm {
        /// The pod's name (metadata.name)
        name: String,
        /// The pod's namespace
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Internal: the per-pod supervisor
    #[command(hide = true)]
    Supervise {
        name: String,
        #[arg(long = "backoff-base-ms", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
        backoff_base_ms: u64,
    },
}

impl Command {
    /// Commands that fork processes which end up inside a container.
    pub fn runs_container_processes(&self) -> bool {
        matches!(self, Command::Create(_) | Command::Run(_) | Command::Exec(_) | Command::Monitor { .. } | Command::Pod(_))
    }

    /// hull's own long-lived processes (a container's monitor, a pod's
    /// supervisor), which must outlive whoever reads their output.
    pub fn is_daemon(&self) -> bool {
        matches!(self, Command::Monitor { .. } | Command::Pod(PodArgs { cmd: PodCmd::Supervise { .. }, .. }))
    }
}

#[derive(Args, Debug, Clone)]
pub struct UpdateCmd {
    /// The container's id
    pub id: String,
    /// A JSON file of linux.resources to apply ("-" for stdin); the other flags are then ignored
    #[arg(short, long)]
    pub resources: Option<String>,
    /// Memory limit in bytes (k, m, g suffixes; -1 for none)
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory plus swap limit in bytes (-1 for none)
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit in bytes
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// CPU shares (relative weight)
    #[arg(long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CPU CFS quota in microseconds per period (-1 for none)
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// CPU realtime period in microseconds
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs the container may use (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of pids (-1 for none)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000)
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
}

#[cfg(test)]
mod help_tests {
    use super::Cli;
    use clap::CommandFactory;

    fn missing(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if matches!(id, "help" | "version") || a.is_hide_set() {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                out.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            missing(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    /// `hull X --help` says what every flag and argument is.
    #[test]
    fn every_flag_and_argument_has_help() {
        let mut out = Vec::new();
        missing(&Cli::command(), "hull", &mut out);
        assert!(out.is_empty(), "no help text:\n{}", out.join("\n"));
    }
}
