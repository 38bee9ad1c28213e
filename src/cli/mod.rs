//! The runc-compatible command line. Each command is a thin call into
//! [`crate::oci`]; flags and output formats follow runc's so that
//! containerd, podman or docker can use hull in its place.
mod args;
mod exec_process;

use std::io::Write;
use std::path::Path;

use clap::Parser;

use crate::error::{Error, Result};
use crate::logging::{self, LogFormat};
use crate::oci::state::StateRoot;
use crate::oci::{self, create::CreateOptions, exec::ExecOptions, lifecycle};
use args::{Cli, Command};

/// Parse the command line, run the command, return the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let format = if cli.log_format == "json" { LogFormat::Json } else { LogFormat::Text };
    if let Err(e) = logging::init(cli.log.as_deref(), format, cli.debug) {
        eprintln!("hull: cannot open log file: {e}");
        return 1;
    }
    if cli.command.runs_container_processes() && !crate::linux::syscall::running_from_sealed_copy() {
        // Only returns on failure; see linux::syscall for why.
        let Err(e) = crate::linux::syscall::reexec_from_sealed_copy();
        return report(&cli, &e);
    }
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => report(&cli, &e),
    }
}

fn report(cli: &Cli, e: &Error) -> i32 {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    if cli.log.is_some() {
        log::error!("{msg}");
    }
    eprintln!("hull: {msg}");
    1
}

fn dispatch(cli: &Cli) -> Result<i32> {
    if cli.systemd_cgroup {
        return Err(Error::InvalidArgument(
            "--systemd-cgroup: the systemd cgroup driver is not supported yet; use cgroupfs paths".into(),
        ));
    }
    let root = StateRoot::new(&cli.root);
    match &cli.command {
        Command::Create(c) => {
            oci::create::create(&root, &create_options(&c.id, &c.common), None)?;
            Ok(0)
        }
        Command::Run(c) => {
            if c.keep {
                return Err(Error::InvalidArgument("--keep is not supported yet".into()));
            }
            oci::run(&root, &create_options(&c.id, &c.common), c.detach)
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
        Command::Delete { id, force } => lifecycle::delete(&root, id, *force).map(|_| 0),
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
        Command::Spec { bundle, rootless } => spec(bundle.as_deref(), *rootless),
        Command::Features => {
            print_json(&oci::features::features(), true)?;
            Ok(0)
        }
        Command::Update { .. } => Err(Error::InvalidArgument(
            "update: changing resource limits is not implemented yet".into(),
        )),
        Command::Events { .. } => Err(Error::InvalidArgument(
            "events: container events and stats are not implemented yet".into(),
        )),
        Command::Image(c) => Ok(crate::image::cli::run(&cli.image_root, c)?),
    }
}

fn create_options(id: &str, c: &args::CreateArgs) -> CreateOptions {
    CreateOptions {
        id: id.to_string(),
        bundle: c.bundle.clone(),
        pid_file: c.pid_file.clone(),
        console_socket: c.console_socket.clone(),
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        preserve_fds: c.preserve_fds,
    }
}

fn print_json<T: serde::Serialize>(v: &T, pretty: bool) -> Result<()> {
    let text = if pretty { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) }
        .map_err(|e| Error::InvalidState(e.to_string()))?;
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
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| Error::sys("run ps", e))?;
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

fn spec(bundle: Option<&Path>, rootless: bool) -> Result<i32> {
    let dir = bundle.unwrap_or(Path::new("."));
    let path = dir.join("config.json");
    if path.exists() {
        return Err(Error::InvalidArgument(format!("{} already exists; remove it first", path.display())));
    }
    let text = serde_json::to_string_pretty(&oci::spec_template::default_spec(rootless))
        .map_err(|e| Error::InvalidState(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| Error::sys(format!("write {}", path.display()), e))?;
    Ok(0)
}
