//! The lean entry: hidden helper subcommands that hull starts itself, with
//! arguments it wrote, are dispatched here before clap builds hull's whole
//! command line (every command's flags, with image, pod, daemon and network
//! among them). A long-lived helper then runs, and stays resident, with as
//! little of hull as its job needs.
use std::ffi::OsString;

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
    match crate::monitor::ready_fd(fd) {
        Ok(ready) => crate::runtime::holder::main(&spec, ready),
        Err(e) => {
            eprintln!("hull sandbox-holder: {e}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_helpers_take_the_lean_path() {
        let v = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(dispatch(&v(&["hull", "run", "x"])), None);
        assert_eq!(dispatch(&v(&["hull"])), None);
        assert_eq!(dispatch(&v(&["hull", "--root", "/r", "state", "sandbox-holder"])), None);
        // A bad argument is refused before anything is made.
        assert_eq!(dispatch(&v(&["hull", "sandbox-holder", "--ready-fd", "3", "--nope"])), Some(2));
    }
}
