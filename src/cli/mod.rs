//! The runc-compatible command line. Each command is a thin call into
//! [`crate::oci`]; flags and output formats follow runc's so that
//! containerd, podman or docker can use hull in its place.
mod args;
mod daemon;
mod exec_process;
mod lean;
mod network;
mod pod;
mod pod_stream;

use std::io::Write;
use std::path::Path;

use clap::{CommandFactory, FromArgMatches};

use crate::error::{Error, Result};
use crate::logging::{self, LogFormat};
use crate::oci::state::StateRoot;
use crate::oci::{self, create::CreateOptions, exec::ExecOptions, lifecycle};
use args::{Cli, Command};

/// Parse the command line, run the command, return the exit code.
pub fn main() -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = lean::dispatch(&args) {
        return code;
    }
    if let Some(cli) = lean::runtime_command(&args) {
        return run(&cli);
    }
    // The commands past this point may look names up (the daemon's socket
    // group, a registry's host); none has started a thread yet.
    crate::linux::nss::builtin_sources_only();
    let matches = Cli::command().get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Daemon(d) = &cli.command {
        // The daemon logs with tracing (it takes over the `log` records too).
        return daemon::run(&cli, d, &matches);
    }
    run(&cli)
}

/// Run a parsed command line (but the daemon's).
fn run(cli: &Cli) -> i32 {
    if let Err(e) = logging::init(cli.log.as_deref(), log_format(cli), cli.debug) {
        eprintln!("hull: cannot open log file: {e}");
        return 1;
    }
    let mut preloaded = None;
    if cli.command.runs_container_processes() && !crate::linux::syscall::running_from_protected_binary() {
        preloaded = init_trampoline(cli);
        if preloaded.is_none() {
            // Only returns on failure; see linux::syscall for why.
            let Err(e) = crate::linux::syscall::reexec_protected();
            return report(cli, &e);
        }
    }
    if !cli.command.is_daemon() {
        // A reader that went away (`hull pod ps | head -1`) ends the
        // command quietly, as it does any Unix tool, instead of a panic in
        // println! (Rust ignores SIGPIPE, so the write would fail with EPIPE).
        crate::linux::syscall::default_sigpipe();
    }
    match dispatch(cli, preloaded) {
        Ok(code) => code,
        Err(e) => report(cli, &e),
    }
}

/// The bundle of a `create` or `run` whose init can exec through the
/// trampoline of linux::dmz, which then needs no protected re-exec of hull.
fn init_trampoline(cli: &Cli) -> Option<oci::config::Bundle> {
    match &cli.command {
        Command::Create(args::CreateCmd { common, .. }) | Command::Run(args::RunCmd { common, .. }) => {
            crate::linux::dmz::arm(&common.bundle, common.preserve_fds)
        }
        _ => None,
    }
}

fn report(cli: &Cli, e: &Error) -> i32 {
    let msg = crate::error::chain(e);
    // As runc prints a fatal error: through the logger, so on stderr it is
    // a `time=... level=error msg=...` line (or a JSON object with
    // --log-format json); with --log the log file gets that entry (which
    // containerd reads) and stderr the bare message.
    if cli.log.is_some() {
        log::error!("{msg}");
        eprintln!("{msg}");
    } else {
        logging::eprint_line(log_format(cli), log::Level::Error, &msg);
    }
    1
}

fn log_format(cli: &Cli) -> LogFormat {
    if cli.log_format == "json" {
        LogFormat::Json
    } else {
        LogFormat::Text
    }
}

/// `preloaded`: the bundle of a `create` or `run`, when already loaded.
fn dispatch(cli: &Cli, preloaded: Option<oci::config::Bundle>) -> Result<i32> {
    let root = StateRoot::new(&cli.root);
    match &cli.command {
        Command::Create(c) => {
            oci::create::create(&root, &create_options(cli, &c.id, &c.common, preloaded), None)?;
            Ok(0)
        }
        Command::Run(c) => {
            if c.keep {
                return Err(Error::InvalidArgument("--keep is not supported yet".into()));
            }
            oci::run(&root, &create_options(cli, &c.id, &c.common, preloaded), c.detach)
        }
        Command::Start { id } => lifecycle::start(&root, id).map(|_| 0),
        Command::State { id } => {
            print_json(&lifecycle::state(&root, id)?, true)?;
            Ok(0)
        }
        Command::Kill { id, signal, all } => {
            let sig = lifecycle::parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            lifecycle::kill(&root, id, sig, *all).map(|_| 0)
        }
        Command::Delete { id, force } => {
            if lifecycle::delete(&root, id, *force)? == Some(true) {
                log::info!("container {id} was OOM-killed");
            }
            Ok(0)
        }
        Command::List { format, quiet } => list(&root, format, *quiet),
        Command::Ps { id, format, ps_args } => ps(&root, id, format, ps_args),
        Command::Exec(e) => {
            let opts = ExecOptions {
                id: e.id.clone(),
                process: exec_process::build(&root, e)?,
                detach: e.detach,
                pid_file: e.pid_file.clone(),
                console_socket: e.console_socket.clone(),
                preserve_fds: e.preserve_fds,
            };
            oci::exec::exec(&root, &opts)
        }
        Command::Pause { id } => lifecycle::pause(&root, id).map(|_| 0),
        Command::Resume { id } => lifecycle::resume(&root, id).map(|_| 0),
        Command::Spec { bundle, rootless, seccomp_default } => spec(bundle.as_deref(), *rootless, *seccomp_default),
        Command::Features => {
            print_json(&oci::features::features(), true)?;
            Ok(0)
        }
        Command::Network(n) => network::run(&cli.root, n),
        Command::Pod(_) if cli.systemd_cgroup => Err(Error::InvalidArgument(
            "--systemd-cgroup is not supported by hull pod: its pod cgroups are cgroupfs paths (/hull-pod-<uid>), not systemd slices"
                .into(),
        )),
        Command::Pod(p) => pod::dispatch(&root.path, p.state_dir.as_deref(), &cli.image_root, &p.cmd),
        Command::Monitor { id, bundle, log_path, exit_file, ready_fd, hold_created, stdin, stdin_once, tty, attach_socket } => {
            let ready = crate::monitor::take_ready_fd(*ready_fd)?;
            let spec = crate::monitor::MonitorSpec {
                state_root: cli.root.clone(),
                id: id.clone(),
                bundle: bundle.clone(),
                log_path: log_path.clone(),
                exit_file: exit_file.clone(),
                hold_created: *hold_created,
            };
            let stdio =
                crate::monitor::attach::Stdio { stdin: *stdin, stdin_once: *stdin_once, tty: *tty, attach_socket: attach_socket.clone() };
            Ok(crate::monitor::run(&root, &spec, &stdio, ready))
        }
        Command::Update(u) => {
            oci::update::update(&root, &u.id, &update_resources(u)?)?;
            Ok(0)
        }
        Command::Events { id, stats, interval } => {
            let interval = oci::events::parse_interval(interval).map_err(|e| Error::InvalidArgument(format!("--interval: {e}")))?;
            oci::events::events(&root, id, *stats, interval, &mut std::io::stdout().lock())?;
            Ok(0)
        }
        Command::Image(c) => Ok(crate::image::cli::run(&cli.image_root, c)?),
        Command::Daemon(_) => unreachable!("handled in main"),
    }
}

fn create_options(cli: &Cli, id: &str, c: &args::CreateArgs, loaded: Option<oci::config::Bundle>) -> CreateOptions {
    CreateOptions {
        loaded,
        id: id.to_string(),
        bundle: c.bundle.clone(),
        pid_file: c.pid_file.clone(),
        console_socket: c.console_socket.clone(),
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        preserve_fds: c.preserve_fds,
        systemd_cgroup: cli.systemd_cgroup,
    }
}

/// The resources `update` applies: the --resources JSON (as runc, the other
/// flags are then ignored), else the flags.
fn update_resources(u: &args::UpdateCmd) -> Result<oci_spec::runtime::LinuxResources> {
    use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
    if let Some(path) = &u.resources {
        let text = if path == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| Error::sys("read stdin", e))?;
            s
        } else {
            std::fs::read_to_string(path).map_err(|e| Error::sys(format!("read {path}"), e))?
        };
        return oci::config::from_slice_naming_path(text.as_bytes())
            .map_err(|e| Error::InvalidArgument(format!("--resources: field {}: {}", e.path(), e.inner())));
    }
    let bytes = |flag: &str, v: &Option<String>| -> Result<Option<i64>> {
        v.as_deref()
            .map(|s| oci::update::parse_bytes(s).map_err(|e| Error::InvalidArgument(format!("--{flag}: {e}"))))
            .transpose()
    };
    let mut r = LinuxResources::default();
    let (limit, swap, reservation) =
        (bytes("memory", &u.memory)?, bytes("memory-swap", &u.memory_swap)?, bytes("memory-reservation", &u.memory_reservation)?);
    if limit.is_some() || swap.is_some() || reservation.is_some() {
        let mut m = LinuxMemory::default();
        m.set_limit(limit);
        m.set_swap(swap);
        m.set_reservation(reservation);
        r.set_memory(Some(m));
    }
    let cpu_set = u.cpu_shares.is_some()
        || u.cpu_quota.is_some()
        || u.cpu_period.is_some()
        || u.cpu_rt_period.is_some()
        || u.cpu_rt_runtime.is_some()
        || u.cpuset_cpus.is_some()
        || u.cpuset_mems.is_some();
    if cpu_set {
        let mut c = LinuxCpu::default();
        c.set_shares(u.cpu_shares);
        c.set_quota(u.cpu_quota);
        c.set_period(u.cpu_period);
        c.set_realtime_period(u.cpu_rt_period);
        c.set_realtime_runtime(u.cpu_rt_runtime);
        c.set_cpus(u.cpuset_cpus.clone());
        c.set_mems(u.cpuset_mems.clone());
        r.set_cpu(Some(c));
    }
    if let Some(l) = u.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(l);
        r.set_pids(Some(p));
    }
    if let Some(w) = u.blkio_weight {
        let mut b = LinuxBlockIo::default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

fn print_json<T: serde::Serialize>(v: &T, pretty: bool) -> Result<()> {
    let text =
        if pretty { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) }.map_err(|e| Error::InvalidState(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    Ok(())
}

fn list(root: &StateRoot, format: &str, quiet: bool) -> Result<i32> {
    let all = lifecycle::list(root)?;
    if quiet {
        for s in &all {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match format {
        "json" => print_json(&all, false)?,
        "table" => {
            let rows: Vec<[String; 6]> = all
                .iter()
                .map(|s| {
                    [
                        s.id.clone(),
                        s.pid.to_string(),
                        s.status.to_string(),
                        s.bundle.display().to_string(),
                        s.created.clone(),
                        if s.owner.is_empty() { "root".into() } else { s.owner.clone() },
                    ]
                })
                .collect();
            print_table(&["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"], &rows);
        }
        other => return Err(Error::InvalidArgument(format!("invalid format option {other:?}"))),
    }
    Ok(0)
}

fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        println!("{s}");
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// `ps`: the container's pids as JSON, or `ps` output filtered to them.
fn ps(root: &StateRoot, id: &str, format: &str, ps_args: &[String]) -> Result<i32> {
    let pids = lifecycle::pids(root, id)?;
    match format {
        "json" => {
            print_json(&pids, false)?;
            return Ok(0);
        }
        "table" => {}
        other => return Err(Error::InvalidArgument(format!("invalid format option {other:?}"))),
    }
    let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
    let out = std::process::Command::new("ps").args(&args).output().map_err(|e| Error::sys("run ps", e))?;
    if !out.status.success() {
        return Err(Error::InvalidArgument(format!("ps {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::InvalidArgument("ps output has no PID column".into()))?;
    println!("{header}");
    for l in lines {
        if let Some(pid) = l.split_whitespace().nth(pid_col).and_then(|p| p.parse::<i32>().ok()) {
            if pids.contains(&pid) {
                println!("{l}");
            }
        }
    }
    Ok(0)
}

fn spec(bundle: Option<&Path>, rootless: bool, seccomp_default: bool) -> Result<i32> {
    let dir = bundle.unwrap_or(Path::new("."));
    let path = dir.join("config.json");
    if path.exists() {
        return Err(Error::InvalidArgument(format!("{} already exists; remove it first", path.display())));
    }
    let mut config = oci::spec_template::default_spec(rootless);
    if seccomp_default {
        oci::spec_template::add_default_seccomp(&mut config);
    }
    let text = serde_json::to_string_pretty(&config).map_err(|e| Error::InvalidState(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| Error::sys(format!("write {}", path.display()), e))?;
    Ok(0)
}
