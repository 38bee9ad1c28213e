//! Flags and commands, named as runc names them.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "hull",
    version = concat!("version ", env!("CARGO_PKG_VERSION"), "\nspec: 1.2.1"),
    about = "hull: an OCI container runtime (runc-compatible command line)",
    long_about = "hull runs OCI bundles with the same commands, flags and JSON as runc,\nso containerd, podman or docker can use it in runc's place."
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
    /// Use the systemd cgroup driver (not supported yet: refused with an error)
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
    pub id: String,
    #[command(flatten)]
    pub common: CreateArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RunCmd {
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
    pub id: String,
    /// The command and its arguments (unless --process is given)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// A process.json describing the process to run
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(short, long)]
    pub detach: bool,
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
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Add a capability to the bounding, effective, permitted and inheritable sets
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container: set it up, with its program waiting for `start`
    Create(CreateCmd),
    /// Start the program of a created container
    Start { id: String },
    /// Create and start a container, and wait for it unless --detach
    Run(RunCmd),
    /// Print a container's state as JSON
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init, or to all its processes
    Kill {
        id: String,
        signal: Option<String>,
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container and everything it owns
    Delete {
        id: String,
        /// Kill a running container first
        #[arg(short, long)]
        force: bool,
    },
    /// List containers
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Print only the ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the processes running in a container
    Ps {
        id: String,
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Arguments for ps(1) (default -ef)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Run a new process in a running container
    Exec(ExecCmd),
    /// Freeze all processes of a container
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
    /// Write a default config.json
    Spec {
        #[arg(short, long)]
        bundle: Option<PathBuf>,
        /// A config for running without root (user namespace)
        #[arg(long)]
        rootless: bool,
    },
    /// Print the features this build supports, as JSON
    Features,
    /// Change a container's resource limits (not implemented yet)
    Update {
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    /// Images: pull, import, export, ls, inspect, rm, prune, df, mount, bundle
    Image(crate::image::cli::ImageCmd),
    /// Print container events and stats (not implemented yet)
    Events {
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
}

impl Command {
    /// Commands that fork processes which end up inside a container.
    pub fn runs_container_processes(&self) -> bool {
        matches!(self, Command::Create(_) | Command::Run(_) | Command::Exec(_))
    }
}
