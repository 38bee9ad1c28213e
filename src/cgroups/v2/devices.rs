//! cgroup v2 device rules: v2 has no devices.allow/deny files; access is
//! decided by an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE attached
//! to the cgroup directory. hull generates the program from the rule list
//! (the same structure as runc's `devicefilter`) and loads it with the bpf
//! syscall.
//!
//! Semantics: the rules are checked from the last to the first, the first
//! match decides (so a later rule overrides an earlier one, as successive
//! writes to v1's devices.allow/deny do); no match denies.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::cgroups::devices::Rule;
use crate::error::{Error, Result};

/// One eBPF instruction (struct bpf_insn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
pub const LDX_MEM_W: u8 = 0x01 | 0x60; // BPF_LDX | BPF_MEM | BPF_W
pub const ALU32_AND_K: u8 = 0x04 | 0x50;
pub const ALU32_RSH_K: u8 = 0x04 | 0x70;
pub const ALU32_MOV_K: u8 = 0x04 | 0xb0;
pub const ALU32_MOV_X: u8 = 0x04 | 0xb0 | 0x08;
pub const JNE_K: u8 = 0x05 | 0x50;
pub const JNE_X: u8 = 0x05 | 0x50 | 0x08;
pub const EXIT: u8 = 0x05 | 0x90;

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }:
// access_type = (access << 16) | type.
pub const DEV_BLOCK: u32 = 1;
pub const DEV_CHAR: u32 = 2;
pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | (dst & 0x0f), off, imm }
}

fn access_bits(access: &str) -> u32 {
    access.chars().fold(0, |acc, c| {
        acc | match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        }
    })
}

/// The program for `rules`. Registers after the prologue: R2 device type,
/// R3 requested access, R4 major, R5 minor.
pub fn program(rules: &[Rule]) -> Result<Vec<Insn>> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        // Conditions jump to the end of this block when they do not hold;
        // their offsets are patched once the block's length is known.
        let mut block: Vec<Insn> = Vec::new();
        let mut jumps: Vec<usize> = Vec::new();
        let dev_type = match rule.kind {
            'a' => None,
            'b' => Some(DEV_BLOCK),
            'c' => Some(DEV_CHAR),
            k => return Err(Error::resource("linux.resources.devices", format!("unknown device type {k:?}"))),
        };
        if let Some(t) = dev_type {
            jumps.push(block.len());
            block.push(insn(JNE_K, 2, 0, 0, t as i32));
        }
        let access = access_bits(&rule.access);
        if rule.kind != 'a' && access != ACC_READ | ACC_WRITE | ACC_MKNOD {
            // if ((R3 & access) != R3) the request asks for more: no match.
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU32_AND_K, 1, 0, 0, access as i32));
            jumps.push(block.len());
            block.push(insn(JNE_X, 1, 3, 0, 0));
        }
        if rule.kind != 'a' {
            for (reg, num) in [(4u8, rule.major), (5u8, rule.minor)] {
                if let Some(n) = num {
                    let n = i32::try_from(n)
                        .map_err(|_| Error::resource("linux.resources.devices", format!("device number {n} out of range")))?;
                    jumps.push(block.len());
                    block.push(insn(JNE_K, reg, 0, 0, n));
                }
            }
        }
        block.push(insn(ALU32_MOV_K, 0, 0, 0, i32::from(rule.allow)));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let end = block.len();
        let unconditional = jumps.is_empty();
        for j in jumps {
            block[j].off = (end - j - 1) as i16;
        }
        p.extend(block);
        // A rule that matches everything decides every request: what
        // follows could never run, and the verifier refuses unreachable code.
        if unconditional {
            return Ok(p);
        }
    }
    p.push(insn(ALU32_MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    Ok(p)
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The BPF_PROG_LOAD part of union bpf_attr, zero-padded to a size the
/// kernel accepts (it checks that bytes beyond what it knows are zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _pad: [u64; 8],
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    _pad: [u32; 3],
}

/// Largest verifier log buffer every kernel since 4.15 accepts (older
/// kernels cap log_size at UINT_MAX >> 8; 5.2 raised it to UINT_MAX >> 2).
const MAX_LOG_SIZE: usize = (u32::MAX >> 8) as usize;
/// How much of the verifier's log an error message keeps (its end, where
/// the verifier says why it refused the program).
const LOG_TAIL: usize = 2048;

/// One BPF_PROG_LOAD of `insns`; with `log`, the verifier writes its log
/// there (log_level 1).
fn prog_load(insns: &[Insn], log: Option<&mut [u8]>) -> std::io::Result<OwnedFd> {
    let license = b"GPL\0";
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"hull_devs");
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid, zero-padded bpf_attr for BPF_PROG_LOAD;
    // the pointers in it (instructions, license, log buffer) point to live
    // buffers of the stated sizes for the duration of the call. The kernel
    // returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoadAttr, std::mem::size_of::<ProgLoadAttr>()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Load the program for `rules` (not attached).
///
/// Without a log first: with log_level 1 the kernel fails a load whose log
/// does not fit the buffer with ENOSPC, even when the program is fine, and
/// how much a kernel logs for the same program varies (6.1 logs every
/// instruction of every path; runc's and containerd's allow lists do not
/// fit in 4 KiB there). Only when that load fails is it repeated with a
/// buffer as large as the kernel allows, to report why.
pub fn load(rules: &[Rule]) -> Result<OwnedFd> {
    let insns = program(rules)?;
    let first = match prog_load(&insns, None) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    let mut log = vec![0u8; MAX_LOG_SIZE];
    let retry = prog_load(&insns, Some(&mut log));
    let len = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[len.saturating_sub(LOG_TAIL)..len]);
    let text = text.trim();
    let detail = match retry {
        // Loaded with the log on but not without: not expected; keep it.
        Ok(fd) => return Ok(fd),
        Err(_) if text.is_empty() => String::new(),
        Err(_) if len > LOG_TAIL => format!("; the verifier's log ends: ...{text}"),
        Err(_) => format!("; the verifier's log: {text}"),
    };
    Err(Error::resource("linux.resources.devices", format!("load the eBPF device filter ({} instructions): {first}{detail}", insns.len())))
}

/// Load the program for `rules` and attach it to the cgroup `dir`. The
/// attachment keeps the program alive after hull exits, until the cgroup
/// is removed.
pub fn apply(dir: &Path, rules: &[Rule]) -> Result<()> {
    let prog = load(rules)?;
    let cgroup =
        std::fs::File::open(dir).map_err(|e| Error::resource("linux.resources.devices", format!("open {}: {e}", dir.display())))?;
    let attach = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    // SAFETY: `attach` is a valid, zero-padded bpf_attr for BPF_PROG_ATTACH
    // whose fds are open for the duration of the call.
    let rc =
        unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, &attach as *const ProgAttachAttr, std::mem::size_of::<ProgAttachAttr>()) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::resource("linux.resources.devices", format!("attach the eBPF device filter to {}: {e}", dir.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::devices::default_allowed;

    /// A tiny interpreter for the instructions `program` emits, to check
    /// what the generated program decides.
    fn run(p: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> u32 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0u32; 11];
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0x0f) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = ctx[i.off as usize / 4];
                }
                ALU32_AND_K => r[dst] &= i.imm as u32,
                ALU32_RSH_K => r[dst] >>= i.imm as u32,
                ALU32_MOV_K => r[dst] = i.imm as u32,
                ALU32_MOV_X => r[dst] = r[src],
                JNE_K => {
                    if r[dst] != i.imm as u32 {
                        pc += i.off as usize;
                    }
                }
                JNE_X => {
                    if r[dst] != r[src] {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
            assert!(pc < p.len(), "jumped out of the program");
        }
        panic!("program did not terminate");
    }

    /// Every instruction reachable, every jump inside the program (what the
    /// kernel's verifier checks first).
    fn assert_well_formed(p: &[Insn]) {
        let mut seen = vec![false; p.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            assert!(pc < p.len(), "jump out of the program");
            if std::mem::replace(&mut seen[pc], true) {
                continue;
            }
            match p[pc].code {
                EXIT => {}
                JNE_K | JNE_X => todo.extend([pc + 1, pc + 1 + p[pc].off as usize]),
                _ => todo.push(pc + 1),
            }
        }
        assert!(seen.iter().all(|s| *s), "unreachable instructions in {p:?}");
    }

    fn rule(allow: bool, kind: char, major: Option<i64>, minor: Option<i64>, access: &str) -> Rule {
        Rule { allow, kind, major, minor, access: access.into() }
    }

    #[test]
    fn deny_all_then_defaults() {
        let mut rules = vec![rule(false, 'a', None, None, "rwm")];
        rules.extend(default_allowed());
        let p = program(&rules).unwrap();
        assert_well_formed(&p);
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(run(&p, DEV_CHAR, rw, 1, 3), 1, "/dev/null");
        assert_eq!(run(&p, DEV_CHAR, rw, 136, 7), 1, "a pty");
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 8, 0), 1, "mknod of any char device");
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0, "a disk");
        assert_eq!(run(&p, DEV_CHAR, rw, 1, 1), 0, "/dev/mem");
        assert_eq!(run(&p, DEV_CHAR, rw, 10, 229), 0, "/dev/fuse");
    }

    #[test]
    fn later_rules_override_and_access_is_checked() {
        let rules = vec![rule(true, 'a', None, None, "rwm"), rule(false, 'b', Some(8), None, "w"), rule(true, 'c', Some(5), Some(1), "r")];
        let p = program(&rules).unwrap();
        assert_well_formed(&p);
        assert_eq!(run(&p, DEV_BLOCK, ACC_WRITE, 8, 1), 0, "write to sda1 denied");
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 1), 1, "read allowed by the first rule");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 5, 1), 1, "allowed by allow-all");
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 9, 0), 1);
    }

    #[test]
    fn empty_rules_deny_everything() {
        let p = program(&[]).unwrap();
        assert_well_formed(&p);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 0);
        assert_eq!(p.last().unwrap().code, EXIT);
    }

    /// The allow list containerd, podman and CRI runtimes give every
    /// container (deny all first), with hull's own defaults after it.
    fn container_default_rules() -> Vec<Rule> {
        let mut rules = vec![rule(false, 'a', None, None, "rwm")];
        for (major, minor) in [
            (1, Some(3)),
            (1, Some(5)),
            (1, Some(7)),
            (1, Some(8)),
            (1, Some(9)),
            (5, Some(0)),
            (5, Some(1)),
            (5, Some(2)),
            (136, None),
            (10, Some(200)),
        ] {
            rules.push(rule(true, 'c', Some(major), minor, "rwm"));
        }
        rules.push(rule(true, 'c', None, None, "m"));
        rules.push(rule(true, 'b', None, None, "m"));
        rules.extend(default_allowed());
        rules
    }

    /// Loading needs CAP_BPF or CAP_SYS_ADMIN: without them the kernel
    /// refuses with EPERM and the test says it is skipped.
    fn bpf_refused(err: &Error, test: &str) -> bool {
        let refused = err.to_string().contains("Operation not permitted");
        if refused {
            eprintln!("skipped {test}: loading eBPF programs needs CAP_BPF or CAP_SYS_ADMIN");
        }
        refused
    }

    /// Linux 6.1 logs every instruction of every path at log_level 1, so
    /// this list's log overflowed the 4 KiB hull used to pass and the load
    /// failed with ENOSPC. Loaded without a log, it loads on every kernel.
    #[test]
    fn the_container_default_allow_list_loads_into_the_kernel() {
        let rules = container_default_rules();
        assert!(program(&rules).unwrap().len() > 100, "a long program, as the kernel sees from containerd");
        match load(&rules) {
            Ok(_) => {}
            Err(e) if bpf_refused(&e, "the_container_default_allow_list_loads_into_the_kernel") => {}
            Err(e) => panic!("{e}"),
        }
    }

    /// A program the verifier refuses is reported with what the verifier
    /// said (from the second load, with the log on).
    #[test]
    fn a_refused_program_is_reported_with_the_verifiers_log() {
        // EXIT with R0 never written.
        let insns = [insn(EXIT, 0, 0, 0, 0)];
        let first = prog_load(&insns, None).unwrap_err();
        if first.raw_os_error() == Some(libc::EPERM) {
            eprintln!("skipped a_refused_program_is_reported_with_the_verifiers_log: loading eBPF programs needs CAP_BPF or CAP_SYS_ADMIN");
            return;
        }
        assert_eq!(first.raw_os_error(), Some(libc::EACCES), "{first}");
        let mut log = vec![0u8; 1 << 16];
        prog_load(&insns, Some(&mut log)).unwrap_err();
        let text = String::from_utf8_lossy(&log);
        assert!(text.contains("R0 !read_ok"), "verifier log: {text}");
    }

    #[test]
    fn instruction_encoding() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // r2 = *(u32 *)(r1 + 0)
        assert_eq!(insn(LDX_MEM_W, 2, 1, 0, 0), Insn { code: 0x61, regs: 0x12, off: 0, imm: 0 });
        assert_eq!(EXIT, 0x95);
        assert_eq!(JNE_X, 0x5d);
    }
}
