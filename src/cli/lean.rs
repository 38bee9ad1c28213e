//! The lean entry: command lines parsed before clap builds hull's whole
//! command tree (every command's flags, image, pod, daemon and network
//! among them). Building that tree touches clap's code and a few hundred
//! KiB of heap in every process, which is most of what a short runtime
//! command would otherwise page in.
//!
//! Two kinds go this way:
//! - hidden helpers that hull starts itself with arguments it wrote (the
//!   sandbox holder), which then stay resident with as little of hull as
//!   their job needs;
//! - the runc-compatible commands a container manager runs for every
//!   container (create, start, state, kill, delete, run, exec)
//!   and the per-container monitor, as a [`Cli`] that the usual dispatch
//!   runs. Only a command line made of nothing but what this parser knows,
//!   each flag at most once, is taken: anything else (`--help`,
//!   `--version`, an unknown or repeated flag, a value that is empty,
//!   starts with `-` or does not parse, `--`, a non-UTF-8 argument) is
//!   left to clap, which prints its own help or error. What hull accepts
//!   and prints stays clap's; a test checks that both parse every line
//!   this one takes to the same [`Cli`].
use std::ffi::OsString;
use std::path::PathBuf;

use super::args::{Cli, Command, CreateArgs, CreateCmd, ExecCmd, RunCmd};

/// Run a lean helper if `args` (the whole command line) names one, and
/// return its exit code; None for everything else.
pub fn dispatch(args: &[OsString]) -> Option<i32> {
    match args.get(1).and_then(|a| a.to_str()) {
        Some("sandbox-holder") => Some(sandbox_holder(&args[2..])),
        _ => None,
    }
}

fn sandbox_holder(args: &[OsString]) -> i32 {
    let parsed = args
        .iter()
        .map(|a| a.to_str().map(str::to_string).ok_or_else(|| format!("argument {a:?} is not UTF-8")))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|a| crate::runtime::holder::HolderSpec::parse_args(&a));
    let (spec, fd) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hull sandbox-holder: {e}");
            return 2;
        }
    };
    match crate::monitor::take_ready_fd(fd) {
        Ok(ready) => crate::runtime::holder::main(&spec, ready),
        Err(e) => {
            eprintln!("hull sandbox-holder: {e}");
            2
        }
    }
}

/// How a flag is written: its long name, its short letter, whether it
/// takes a value.
struct Flag {
    long: &'static str,
    short: Option<char>,
    value: bool,
}

const fn flag(long: &'static str, short: Option<char>, value: bool) -> Flag {
    Flag { long, short, value }
}

/// The global flags (clap takes them before and after the command).
const GLOBAL: &[Flag] = &[
    flag("root", None, true),
    flag("log", None, true),
    flag("log-format", None, true),
    flag("debug", None, false),
    flag("systemd-cgroup", None, false),
    flag("image-root", None, true),
];

const CREATE: &[Flag] = &[
    flag("bundle", Some('b'), true),
    flag("pid-file", None, true),
    flag("console-socket", None, true),
    flag("no-pivot", None, false),
    flag("no-new-keyring", None, false),
    flag("preserve-fds", None, true),
];

const RUN_ONLY: &[Flag] = &[flag("detach", Some('d'), false), flag("keep", None, false)];

const EXEC: &[Flag] = &[
    flag("process", Some('p'), true),
    flag("detach", Some('d'), false),
    flag("tty", Some('t'), false),
    flag("pid-file", None, true),
    flag("console-socket", None, true),
    flag("preserve-fds", None, true),
];

const DELETE: &[Flag] = &[flag("force", Some('f'), false)];
const KILL: &[Flag] = &[flag("all", Some('a'), false)];

const MONITOR: &[Flag] = &[
    flag("bundle", None, true),
    flag("log-path", None, true),
    flag("exit-file", None, true),
    flag("ready-fd", None, true),
    flag("hold-created", None, false),
    flag("stdin", None, false),
    flag("stdin-once", None, false),
    flag("tty", None, false),
    flag("attach-socket", None, true),
];

/// The flags given, by long name (a bool flag's value is "").
#[derive(Default)]
struct Given<'a> {
    flags: Vec<(&'static str, &'a str)>,
    positionals: Vec<&'a str>,
    /// exec's command words: everything after its first word, as given.
    trailing: Vec<&'a str>,
}

impl<'a> Given<'a> {
    /// Record a flag; None when it was already given.
    fn set(&mut self, long: &'static str, value: &'a str) -> Option<()> {
        if self.flags.iter().any(|(l, _)| *l == long) {
            return None;
        }
        self.flags.push((long, value));
        Some(())
    }

    fn value(&self, long: &str) -> Option<&'a str> {
        self.flags.iter().find(|(l, _)| *l == long).map(|(_, v)| *v)
    }

    fn path(&self, long: &str) -> Option<PathBuf> {
        self.value(long).map(PathBuf::from)
    }

    fn on(&self, long: &str) -> bool {
        self.value(long).is_some()
    }

    /// A number flag: None (so clap reports it) when it does not parse.
    fn number<T: std::str::FromStr>(&self, long: &str, default: T) -> Option<T> {
        self.value(long).map_or(Some(default), |v| v.parse().ok())
    }
}

/// The runtime command `args` (the whole command line) holds, when this
/// parser takes it (see the module comment); None leaves it to clap.
pub fn runtime_command(args: &[OsString]) -> Option<Cli> {
    let args: Vec<&str> = args.iter().skip(1).map(|a| a.to_str().filter(|s| !s.is_empty())).collect::<Option<_>>()?;
    let mut globals = Given::default();
    let mut given = Given::default();
    let mut command: Option<(&str, &[Flag], &[Flag])> = None;
    let mut rest = args.iter().copied();
    while let Some(arg) = rest.next() {
        if !arg.starts_with('-') {
            match command {
                None => {
                    let (own, extra) = command_flags(arg)?;
                    command = Some((arg, own, extra));
                }
                // `exec ID CMD ARGS...`: clap takes the words from CMD on
                // as they are (a trailing list that accepts hyphens); here
                // only when every flag came before ID.
                Some(("exec", _, _)) if !given.positionals.is_empty() => {
                    given.trailing.push(arg);
                    given.trailing.extend(rest.by_ref());
                }
                Some(_) => given.positionals.push(arg),
            }
            continue;
        }
        if matches!(command, Some(("exec", _, _))) && !given.positionals.is_empty() {
            return None;
        }
        let (own, extra) = command.map_or((&[][..], &[][..]), |(_, own, extra)| (own, extra));
        let (f, inline) = find_flag(arg, [GLOBAL, own, extra])?;
        let value = match (f.value, inline) {
            (false, None) => "",
            (false, Some(_)) => return None,
            (true, Some(v)) => v,
            (true, None) => rest.next().filter(|v| !v.starts_with('-'))?,
        };
        if value.is_empty() && f.value {
            return None;
        }
        let to = if GLOBAL.iter().any(|g| g.long == f.long) { &mut globals } else { &mut given };
        to.set(f.long, value)?;
    }
    let (name, _, _) = command?;
    let command = build_command(name, &given)?;
    let log_format = globals.value("log-format").unwrap_or("text");
    if !matches!(log_format, "text" | "json") {
        return None;
    }
    Some(Cli {
        root: globals.path("root").unwrap_or_else(|| PathBuf::from("/run/hull")),
        log: globals.path("log"),
        log_format: log_format.to_string(),
        debug: globals.on("debug"),
        systemd_cgroup: globals.on("systemd-cgroup"),
        image_root: match globals.path("image-root") {
            Some(p) => p,
            None => image_root_from_env()?,
        },
        command,
    })
}

/// `--image-root`'s default: $HULL_IMAGE_ROOT, else the store's default.
/// A variable set but empty is clap's to judge.
fn image_root_from_env() -> Option<PathBuf> {
    match std::env::var_os("HULL_IMAGE_ROOT") {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => Some(PathBuf::from(crate::image::store::DEFAULT_ROOT)),
    }
}

/// The flags of a command taken here (its own, and run's extra ones).
fn command_flags(name: &str) -> Option<(&'static [Flag], &'static [Flag])> {
    Some(match name {
        "create" => (CREATE, &[]),
        "run" => (CREATE, RUN_ONLY),
        "exec" => (EXEC, &[]),
        "start" | "state" => (&[], &[]),
        "delete" => (DELETE, &[]),
        "kill" => (KILL, &[]),
        "monitor" => (MONITOR, &[]),
        _ => return None,
    })
}

/// The flag `arg` names (`--long`, `--long=value` or `-s`) among `tables`,
/// with its inline value.
fn find_flag<'a>(arg: &'a str, tables: [&'static [Flag]; 3]) -> Option<(&'static Flag, Option<&'a str>)> {
    let all = || tables.into_iter().flatten();
    if let Some(long) = arg.strip_prefix("--") {
        let (name, inline) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (long, None),
        };
        return all().find(|f| f.long == name).map(|f| (f, inline));
    }
    let mut chars = arg.strip_prefix('-')?.chars();
    let (c, None) = (chars.next()?, chars.next()) else { return None };
    all().find(|f| f.short == Some(c)).map(|f| (f, None))
}

fn build_command(name: &str, g: &Given) -> Option<Command> {
    let id = |n: usize| -> Option<String> { (g.positionals.len() == n).then(|| g.positionals[0].to_string()) };
    let create = || -> Option<CreateArgs> {
        Some(CreateArgs {
            bundle: g.path("bundle").unwrap_or_else(|| PathBuf::from(".")),
            pid_file: g.path("pid-file"),
            console_socket: g.path("console-socket"),
            no_pivot: g.on("no-pivot"),
            no_new_keyring: g.on("no-new-keyring"),
            preserve_fds: g.number("preserve-fds", 0)?,
        })
    };
    Some(match name {
        "create" => Command::Create(CreateCmd { id: id(1)?, common: create()? }),
        "run" => Command::Run(RunCmd { id: id(1)?, common: create()?, detach: g.on("detach"), keep: g.on("keep") }),
        "start" => Command::Start { id: id(1)? },
        "state" => Command::State { id: id(1)? },
        "delete" => Command::Delete { id: id(1)?, force: g.on("force") },
        "kill" => {
            let signal = g.positionals.get(1).map(|s| s.to_string());
            Command::Kill { id: id(1).or_else(|| id(2))?, signal, all: g.on("all") }
        }
        // --process (as containerd calls it) or command words, not both.
        "exec" if g.trailing.is_empty() == g.on("process") => Command::Exec(ExecCmd {
            id: id(1)?,
            command: g.trailing.iter().map(|s| s.to_string()).collect(),
            process: g.path("process"),
            detach: g.on("detach"),
            pid_file: g.path("pid-file"),
            cwd: None,
            env: Vec::new(),
            user: None,
            additional_gids: Vec::new(),
            tty: g.on("tty"),
            console_socket: g.path("console-socket"),
            cap: Vec::new(),
            no_new_privs: false,
            apparmor: None,
            process_label: None,
            preserve_fds: g.number("preserve-fds", 0)?,
        }),
        "monitor" => Command::Monitor {
            id: id(1)?,
            bundle: g.path("bundle")?,
            log_path: g.path("log-path")?,
            exit_file: g.path("exit-file")?,
            ready_fd: g.value("ready-fd")?.parse().ok()?,
            hold_created: g.on("hold-created"),
            stdin: g.on("stdin"),
            stdin_once: g.on("stdin-once"),
            tty: g.on("tty"),
            attach_socket: g.path("attach-socket"),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn v(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_the_helpers_take_the_lean_path() {
        assert_eq!(dispatch(&v(&["hull", "run", "x"])), None);
        assert_eq!(dispatch(&v(&["hull"])), None);
        assert_eq!(dispatch(&v(&["hull", "--root", "/r", "state", "sandbox-holder"])), None);
        // A bad argument is refused before anything is made.
        assert_eq!(dispatch(&v(&["hull", "sandbox-holder", "--ready-fd", "3", "--nope"])), Some(2));
    }

    /// Every line the lean parser takes, clap parses to the same command
    /// line (compared through Debug, which shows every field).
    #[test]
    fn lean_lines_parse_as_clap_parses_them() {
        let lines: &[&[&str]] = &[
            &["create", "c1"],
            &["--root", "/r", "create", "--bundle", "/b", "--pid-file", "/p", "c1"],
            &["--root=/r", "--log", "/l", "--log-format", "json", "create", "-b", "/b", "c1", "--console-socket", "/s"],
            &["create", "c1", "--no-pivot", "--no-new-keyring", "--preserve-fds", "3", "--root", "/after"],
            &["--systemd-cgroup", "--debug", "run", "-d", "--bundle=/b", "c2"],
            &["run", "--keep", "c2", "--image-root", "/i"],
            &["start", "c3"],
            &["--root", "/r", "state", "c3"],
            &["delete", "-f", "c3"],
            &["delete", "c3", "--force", "--log-format=text"],
            &["kill", "c4"],
            &["kill", "c4", "KILL"],
            &["kill", "--all", "c4", "9"],
            &["kill", "-a", "c4", "SIGTERM"],
            &["exec", "--process", "/p.json", "c5"],
            &["exec", "-d", "--pid-file", "/pid", "--console-socket", "/s", "-p", "/p.json", "--preserve-fds", "2", "c5"],
            &["exec", "c5", "/bin/true"],
            &["exec", "-t", "-d", "c5", "sh", "-c", "echo --tty -d", "--", "-x"],
            &["exec", "c5", "sh", "-c", "ls -l", "--root", "/r"],
            &["--root", "/r", "exec", "--console-socket", "/s", "-t", "c5", "sh", "-c", "ls -l --root /r"],
            &["monitor", "c6", "--bundle", "/b", "--log-path", "/l", "--exit-file", "/e", "--ready-fd", "5"],
            &["--root", "/r", "monitor", "c6", "--bundle", "/b", "--log-path", "/l", "--exit-file", "/e", "--ready-fd", "5", "--tty"],
            &["monitor", "c6", "--bundle=/b", "--log-path=/l", "--exit-file=/e", "--ready-fd=5", "--hold-created", "--stdin"],
            &[
                "monitor",
                "--stdin-once",
                "c6",
                "--bundle",
                "/b",
                "--log-path",
                "/l",
                "--exit-file",
                "/e",
                "--ready-fd",
                "5",
                "--attach-socket",
                "/a",
            ],
        ];
        for line in lines {
            let argv = v(&[&["hull"], *line].concat());
            let lean = runtime_command(&argv).unwrap_or_else(|| panic!("lean parser refused {line:?}"));
            let clap = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("clap refused {line:?}: {e}"));
            assert_eq!(format!("{lean:?}"), format!("{clap:?}"), "{line:?}");
        }
    }

    /// Help, version, errors and anything unusual are clap's.
    #[test]
    fn everything_else_is_left_to_clap() {
        let lines: &[&[&str]] = &[
            &[],
            &["--help"],
            &["-h"],
            &["--version"],
            &["create", "--help"],
            &["run", "-h", "c"],
            &["create"],
            &["create", "a", "b"],
            &["state", "c", "--bundle", "/b"],
            &["create", "--bundle", "c"],
            &["create", "c", "--bundle"],
            &["create", "c", "--bundle", ""],
            &["create", "c", "--bundle="],
            &["create", "c", "-b", "-x"],
            &["create", "c", "--preserve-fds", "x"],
            &["create", "c", "--preserve-fds", "-1"],
            &["create", "c", "--no-pivot", "--no-pivot"],
            &["--root", "/a", "create", "c", "--root", "/b"],
            &["create", "c", "--no-pivot=true"],
            &["create", "c", "-bd"],
            &["create", "--", "c"],
            &["--bundle", "/b", "create", "c"],
            &["run", "c", "--nope"],
            &["--log-format", "xml", "state", "c"],
            &["kill", "c", "-9"],
            &["kill", "c", "TERM", "extra"],
            &["exec", "c"],
            &["exec", "-p", "/p", "c", "sh"],
            &["exec", "c", "-t", "sh"],
            &["exec", "c", "--root", "/r", "sh"],
            &["exec", "-e", "A=1", "c", "sh"],
            &["exec", "c", "sh", ""],
            &["list"],
            &["pod", "ls"],
            &["image", "ls"],
            &["daemon"],
            &["monitor", "c", "--bundle", "/b"],
            &["monitor", "c", "--bundle", "/b", "--log-path", "/l", "--exit-file", "/e", "--ready-fd", "x"],
            &["create", "c", ""],
        ];
        for line in lines {
            let argv = v(&[&["hull"], *line].concat());
            assert!(runtime_command(&argv).is_none(), "lean parser took {line:?}");
        }
        let non_utf8 = vec![OsString::from("hull"), OsString::from("state"), std::os::unix::ffi::OsStringExt::from_vec(vec![0xff])];
        assert!(runtime_command(&non_utf8).is_none());
    }
}
