//! Process attributes of runtime-spec 1.2/1.3 beyond user and capabilities:
//! process.scheduler, process.ioPriority, process.execCPUAffinity,
//! linux.personality, linux.memoryPolicy and linux.timeOffsets. Each is
//! checked in full when the config is loaded (so a bad value fails create
//! before anything exists) and applied by the process it concerns.
use oci_spec::runtime::{
    IOPriorityClass, Linux, LinuxPersonalityDomain, LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyFlagType, MemoryPolicyModeType,
    Process,
};

use super::syscall::{self, SchedAttr};
use crate::error::{Error, Result};

/// The largest CPU or NUMA node number hull accepts in a list.
const MAX_INDEX: usize = 1023;

fn config(field: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("{field}: {why}"))
}

/// Parse a Linux CPU/node list ("0-3,7"), bounded by [`MAX_INDEX`].
pub fn parse_list(field: &str, text: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| -> Result<usize> {
            let n: usize = s.trim().parse().map_err(|_| config(field, format!("{part:?} is not a number or range")))?;
            if n > MAX_INDEX {
                return Err(config(field, format!("{n} is larger than {MAX_INDEX}")));
            }
            Ok(n)
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if a > b {
            return Err(config(field, format!("range {part:?} is reversed")));
        }
        out.extend(a..=b);
    }
    if out.is_empty() {
        return Err(config(field, "the list is empty"));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn policy_number(p: LinuxSchedulerPolicy) -> Option<u32> {
    Some(match p {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        // SCHED_ISO was reserved but never merged into Linux.
        LinuxSchedulerPolicy::SchedIso => return None,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    })
}

fn flag_bit(f: LinuxSchedulerFlag) -> u64 {
    match f {
        LinuxSchedulerFlag::SchedResetOnFork => 0x01,
        LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
        LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
        LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
        LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
        LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
        LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
    }
}

/// process.scheduler as the kernel's sched_attr, after the checks the
/// spec and sched(7) make.
fn sched_attr(process: &Process) -> Result<Option<SchedAttr>> {
    let Some(s) = process.scheduler() else {
        return Ok(None);
    };
    let f = "process.scheduler";
    let policy = policy_number(*s.policy()).ok_or_else(|| config(&format!("{f}.policy"), "SCHED_ISO is not implemented by Linux"))?;
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(config(&format!("{f}.nice"), format!("{nice} is outside -20..19")));
    }
    let priority = s.priority().unwrap_or(0);
    let realtime = matches!(s.policy(), LinuxSchedulerPolicy::SchedFifo | LinuxSchedulerPolicy::SchedRr);
    match (realtime, priority) {
        (true, 1..=99) | (false, 0) => {}
        (true, p) => return Err(config(&format!("{f}.priority"), format!("{p} is outside 1..99 for {}", s.policy()))),
        (false, p) => return Err(config(&format!("{f}.priority"), format!("{p}: only SCHED_FIFO and SCHED_RR take a priority"))),
    }
    let deadline = *s.policy() == LinuxSchedulerPolicy::SchedDeadline;
    let dl = [s.runtime(), s.deadline(), s.period()];
    if !deadline && dl.iter().any(|v| v.is_some()) {
        return Err(config(f, "runtime, deadline and period are for SCHED_DEADLINE only"));
    }
    let (runtime, dead, period) = (s.runtime().unwrap_or(0), s.deadline().unwrap_or(0), s.period().unwrap_or(0));
    if deadline && (runtime == 0 || runtime > dead || (period != 0 && dead > period)) {
        return Err(config(f, "SCHED_DEADLINE needs 0 < runtime <= deadline <= period (period 0: the deadline)"));
    }
    let flags = s.flags().iter().flatten().fold(0, |acc, fl| acc | flag_bit(*fl));
    Ok(Some(SchedAttr {
        size: 0,
        sched_policy: policy,
        sched_flags: flags,
        sched_nice: nice,
        sched_priority: priority as u32,
        sched_runtime: runtime,
        sched_deadline: dead,
        sched_period: period,
    }))
}

fn io_priority(process: &Process) -> Result<Option<(u32, u32)>> {
    let Some(io) = process.io_priority() else {
        return Ok(None);
    };
    let class = match io.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let level = io.priority();
    if !(0..=7).contains(&level) {
        return Err(config("process.ioPriority.priority", format!("{level} is outside 0..7")));
    }
    Ok(Some((class, level as u32)))
}

/// Lists of CPU numbers: execCPUAffinity's (initial, final).
pub type CpuLists = (Option<Vec<usize>>, Option<Vec<usize>>);

/// The (initial, final) CPU lists of process.execCPUAffinity.
pub fn exec_cpu_affinity(process: &Process) -> Result<CpuLists> {
    let Some(a) = process.exec_cpu_affinity() else {
        return Ok((None, None));
    };
    let initial = a.initial().as_deref().map(|t| parse_list("process.execCPUAffinity.initial", t)).transpose()?;
    let last = a
        .cpu_affinity_final()
        .as_deref()
        .map(|t| parse_list("process.execCPUAffinity.final", t))
        .transpose()?;
    Ok((initial, last))
}

/// The persona of linux.personality.
fn personality(linux: Option<&Linux>) -> Result<Option<libc::c_ulong>> {
    let Some(p) = linux.and_then(|l| l.personality().as_ref()) else {
        return Ok(None);
    };
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        // The spec defines no flags yet.
        return Err(Error::unsupported("linux.personality.flags", "no personality flags are defined"));
    }
    Ok(Some(match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    }))
}

/// linux.memoryPolicy as set_mempolicy's (mode | flags, node mask).
fn memory_policy(linux: Option<&Linux>) -> Result<Option<(libc::c_int, Vec<libc::c_ulong>)>> {
    let Some(m) = linux.and_then(|l| l.memory_policy().as_ref()) else {
        return Ok(None);
    };
    let f = "linux.memoryPolicy";
    let mode: libc::c_int = match m.mode() {
        MemoryPolicyModeType::MpolDefault => 0,
        MemoryPolicyModeType::MpolPreferred => 1,
        MemoryPolicyModeType::MpolBind => 2,
        MemoryPolicyModeType::MpolInterleave => 3,
        MemoryPolicyModeType::MpolLocal => 4,
        MemoryPolicyModeType::MpolPreferredMany => 5,
        MemoryPolicyModeType::MpolWeightedInterleave => 6,
    };
    let nodes = m.nodes().as_deref().map(str::trim).filter(|n| !n.is_empty());
    let nodes = nodes.map(|n| parse_list(&format!("{f}.nodes"), n)).transpose()?;
    match (m.mode(), &nodes) {
        (MemoryPolicyModeType::MpolDefault | MemoryPolicyModeType::MpolLocal, Some(_)) => {
            return Err(config(&format!("{f}.nodes"), format!("must be empty for {}", m.mode())))
        }
        // MPOL_PREFERRED without nodes is "local allocation".
        (MemoryPolicyModeType::MpolDefault | MemoryPolicyModeType::MpolLocal | MemoryPolicyModeType::MpolPreferred, None) => {}
        (_, None) => return Err(config(&format!("{f}.nodes"), format!("{} needs nodes", m.mode()))),
        _ => {}
    }
    let mut flags = 0;
    for fl in m.flags().iter().flatten() {
        flags |= match fl {
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
        };
    }
    if flags != 0 && matches!(m.mode(), MemoryPolicyModeType::MpolDefault | MemoryPolicyModeType::MpolLocal) {
        return Err(config(&format!("{f}.flags"), format!("{} takes no flags", m.mode())));
    }
    let mut mask = Vec::new();
    for n in nodes.into_iter().flatten() {
        let word = n / libc::c_ulong::BITS as usize;
        if mask.len() <= word {
            mask.resize(word + 1, 0);
        }
        mask[word] |= 1 << (n % libc::c_ulong::BITS as usize);
    }
    Ok(Some((mode | flags, mask)))
}

/// The clock offsets of linux.timeOffsets, as /proc/self/timens_offsets
/// lines.
pub fn time_offsets(linux: Option<&Linux>) -> Result<Option<String>> {
    let Some(offsets) = linux.and_then(|l| l.time_offsets().as_ref()) else {
        return Ok(None);
    };
    let mut text = String::new();
    let mut keys: Vec<&String> = offsets.keys().collect();
    keys.sort();
    for clock in keys {
        let o = &offsets[clock];
        if clock != "monotonic" && clock != "boottime" {
            return Err(config(&format!("linux.timeOffsets.{clock}"), "only monotonic and boottime clocks have offsets"));
        }
        let nanos = o.nanosecs().unwrap_or(0);
        if nanos >= 1_000_000_000 {
            return Err(config(&format!("linux.timeOffsets.{clock}.nanosecs"), "must be below 1000000000"));
        }
        text.push_str(&format!("{clock} {} {nanos}\n", o.secs().unwrap_or(0)));
    }
    Ok(Some(text))
}

/// Check every attribute of this module before anything is created.
pub fn check(process: &Process, linux: Option<&Linux>) -> Result<()> {
    sched_attr(process)?;
    io_priority(process)?;
    exec_cpu_affinity(process)?;
    personality(linux)?;
    memory_policy(linux)?;
    time_offsets(linux)?;
    Ok(())
}

/// Set the process's own attributes (scheduler, I/O priority, persona,
/// memory policy). Called while still privileged: a real-time policy needs
/// CAP_SYS_NICE, which the container may not keep.
pub fn apply(process: &Process, linux: Option<&Linux>) -> Result<()> {
    if let Some(attr) = sched_attr(process)? {
        syscall::sched_setattr(&attr).map_err(|e| Error::sys("process.scheduler: sched_setattr", e))?;
    }
    if let Some((class, level)) = io_priority(process)? {
        syscall::ioprio_set(class, level).map_err(|e| Error::sys("process.ioPriority: ioprio_set", e))?;
    }
    if let Some(persona) = personality(linux)? {
        syscall::set_personality(persona).map_err(|e| Error::sys("linux.personality: personality", e))?;
    }
    if let Some((mode, mask)) = memory_policy(linux)? {
        syscall::set_mempolicy(mode, &mask).map_err(|e| Error::sys("linux.memoryPolicy: set_mempolicy", e))?;
    }
    Ok(())
}

/// Pin `pid` (0: ourselves) to `cpus`.
pub fn set_affinity(pid: i32, cpus: &[usize], field: &str) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for &c in cpus {
        set.set(c).map_err(|e| Error::sys(format!("{field}: CPU {c}"), e))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid), &set).map_err(|e| Error::sys(format!("{field}: sched_setaffinity"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(v: serde_json::Value) -> Process {
        let mut base = serde_json::json!({"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"});
        base.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn linux(v: serde_json::Value) -> Linux {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn lists_parse_and_are_bounded() {
        assert_eq!(parse_list("f", "0-2,5,1").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_list("f", "3-1").is_err());
        assert!(parse_list("f", "99999").unwrap_err().to_string().contains("f:"));
        assert!(parse_list("f", "").is_err());
        assert!(parse_list("f", "a").is_err());
    }

    #[test]
    fn scheduler_values_are_checked() {
        let ok = process(serde_json::json!({"scheduler": {"policy": "SCHED_FIFO", "priority": 10}}));
        assert_eq!(sched_attr(&ok).unwrap().unwrap().sched_policy, 1);
        let bad = process(serde_json::json!({"scheduler": {"policy": "SCHED_OTHER", "priority": 10}}));
        assert!(sched_attr(&bad).unwrap_err().to_string().contains("process.scheduler.priority"));
        let bad = process(serde_json::json!({"scheduler": {"policy": "SCHED_ISO"}}));
        assert!(sched_attr(&bad).unwrap_err().to_string().contains("SCHED_ISO"));
        let bad = process(serde_json::json!({"scheduler": {"policy": "SCHED_BATCH", "nice": 40}}));
        assert!(sched_attr(&bad).unwrap_err().to_string().contains("nice"));
        let dl = process(serde_json::json!({"scheduler": {"policy": "SCHED_DEADLINE", "runtime": 10, "deadline": 5}}));
        assert!(sched_attr(&dl).is_err());
    }

    #[test]
    fn memory_policy_modes_and_nodes() {
        let l = linux(serde_json::json!({"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0,65", "flags": ["MPOL_F_STATIC_NODES"]}}));
        let (mode, mask) = memory_policy(Some(&l)).unwrap().unwrap();
        assert_eq!(mode, 2 | (1 << 15));
        assert_eq!(mask, vec![1, 2]);
        let l = linux(serde_json::json!({"memoryPolicy": {"mode": "MPOL_INTERLEAVE"}}));
        assert!(memory_policy(Some(&l)).unwrap_err().to_string().contains("linux.memoryPolicy.nodes"));
        let l = linux(serde_json::json!({"memoryPolicy": {"mode": "MPOL_DEFAULT", "nodes": "0"}}));
        assert!(memory_policy(Some(&l)).is_err());
        let l = linux(serde_json::json!({"memoryPolicy": {"mode": "MPOL_PREFERRED"}}));
        assert_eq!(memory_policy(Some(&l)).unwrap(), Some((1, vec![])));
    }

    #[test]
    fn time_offsets_lines() {
        let l = linux(serde_json::json!({"timeOffsets": {"monotonic": {"secs": 86400}, "boottime": {"secs": -5, "nanosecs": 7}}}));
        assert_eq!(time_offsets(Some(&l)).unwrap().unwrap(), "boottime -5 7\nmonotonic 86400 0\n");
        let l = linux(serde_json::json!({"timeOffsets": {"realtime": {"secs": 1}}}));
        assert!(time_offsets(Some(&l)).unwrap_err().to_string().contains("linux.timeOffsets.realtime"));
    }

    #[test]
    fn personality_domains() {
        let l = linux(serde_json::json!({"personality": {"domain": "LINUX32"}}));
        assert_eq!(personality(Some(&l)).unwrap(), Some(8));
        let l = linux(serde_json::json!({"personality": {"domain": "LINUX", "flags": ["x"]}}));
        assert!(personality(Some(&l)).unwrap_err().to_string().contains("linux.personality.flags"));
    }
}
