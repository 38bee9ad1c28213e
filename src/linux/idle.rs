//! The sandbox holder's idle loop, run without hull's relocated data.
//!
//! hull is a position-independent executable: the loader writes the
//! run-time address into every pointer of its relocation read-only data
//! (PT_GNU_RELRO: vtables, static tables, the GOT), ~360 KiB that thereby
//! become private anonymous memory of each process. For a holder, which
//! then sleeps for the pod's whole life, those pages were most of its
//! resident set. Once it is set up it needs none of them: this loop makes
//! its system calls itself (no call through the GOT into libc or hull, no
//! vtable, no panic path), so the holder unmaps the whole segment before it enters
//! the loop. Anything that still reached for it would fault and kill the
//! holder, never read a stale pointer.

/// The signals the holder waits for, as a kernel sigset (bit n-1 for signal n).
pub fn signal_mask(signals: &[libc::c_int]) -> u64 {
    signals.iter().filter(|&&s| (1..=64).contains(&s)).fold(0, |m, &s| m | 1 << (s - 1))
}

/// Unmap the main executable's PT_GNU_RELRO segment (the range the loader
/// made read-only after relocating it), then wait for the signals in
/// `mask` (blocked by the caller): SIGCHLD reaps every exited child (the
/// holder is the init of a shared PID namespace), SIGTERM and SIGINT end
/// the process with status 0, the rest are ignored. Where the segment
/// cannot be found it stays mapped; the loop is the same.
///
/// The unmapping and the loop are one block of assembly: compiled Rust
/// after the unmapping could reach hull's own functions through the GOT
/// (an unoptimised build does), which is part of the segment.
///
/// # Safety
/// The caller must be single-threaded: the other threads would lose the
/// segment too. This never returns.
#[cfg(target_arch = "x86_64")]
pub unsafe fn release_relocated_data_and_idle(mask: u64) -> ! {
    let (start, len) = relro_pages().unwrap_or((0, 0));
    let set = mask;
    // SAFETY: munmap of the main executable's relocated read-only data,
    // page-aligned as the loader protected it (or of nothing: length 0
    // fails with EINVAL and unmaps nothing); nothing runs after it but
    // this block, which uses only registers and `set` on this frame, a
    // frame that stays live because the block never returns. Then
    // rt_sigtimedwait(&set, NULL, NULL, 8), wait4(-1, NULL, WNOHANG, NULL)
    // while it returns a pid, exit_group(0): the x86_64 Linux system call
    // convention (number in rax, arguments in rdi, rsi, rdx, r10; rcx and
    // r11 clobbered).
    unsafe {
        std::arch::asm!(
            "mov eax, {munmap}",
            "syscall",
            "2:",
            "mov eax, {sigtimedwait}",
            "mov rdi, r12",
            "xor esi, esi",
            "xor edx, edx",
            "mov r10d, 8",
            "syscall",
            "cmp eax, {sigchld}",
            "je 3f",
            "cmp eax, {sigterm}",
            "je 4f",
            "cmp eax, {sigint}",
            "je 4f",
            "jmp 2b",
            "3:",
            "mov eax, {wait4}",
            "mov rdi, -1",
            "xor esi, esi",
            "mov edx, {wnohang}",
            "xor r10d, r10d",
            "syscall",
            "test rax, rax",
            "jg 3b",
            "jmp 2b",
            "4:",
            "mov eax, {exit_group}",
            "xor edi, edi",
            "syscall",
            "ud2",
            munmap = const libc::SYS_munmap,
            sigtimedwait = const libc::SYS_rt_sigtimedwait,
            wait4 = const libc::SYS_wait4,
            exit_group = const libc::SYS_exit_group,
            sigchld = const libc::SIGCHLD,
            sigterm = const libc::SIGTERM,
            sigint = const libc::SIGINT,
            wnohang = const libc::WNOHANG,
            in("rdi") start,
            in("rsi") len,
            in("r12") &set as *const u64,
            options(noreturn),
        )
    }
}

/// The page-aligned range of the main executable's PT_GNU_RELRO, from the
/// program headers the kernel passed in the auxiliary vector: the same
/// range glibc's loader mprotects (start and end rounded down to a page).
#[cfg(target_arch = "x86_64")]
fn relro_pages() -> Option<(usize, usize)> {
    // SAFETY: getauxval only reads the auxiliary vector.
    let (phdr, phnum, page) = unsafe {
        (libc::getauxval(libc::AT_PHDR) as usize, libc::getauxval(libc::AT_PHNUM) as usize, libc::getauxval(libc::AT_PAGESZ) as usize)
    };
    if phdr == 0 || phnum == 0 || phnum > 256 || !page.is_power_of_two() {
        return None;
    }
    // SAFETY: AT_PHDR points at the executable's AT_PHNUM program headers,
    // mapped read-only for the life of the process.
    let headers = unsafe { std::slice::from_raw_parts(phdr as *const libc::Elf64_Phdr, phnum) };
    // The load bias: where PT_PHDR says the headers are, against where they are.
    let phdr_vaddr = headers.iter().find(|h| h.p_type == libc::PT_PHDR)?.p_vaddr as usize;
    let bias = phdr.checked_sub(phdr_vaddr)?;
    let relro = headers.iter().find(|h| h.p_type == libc::PT_GNU_RELRO)?;
    let start = bias.checked_add(relro.p_vaddr as usize)? & !(page - 1);
    let end = bias.checked_add(relro.p_vaddr as usize)?.checked_add(relro.p_memsz as usize)? & !(page - 1);
    (end > start).then_some((start, end - start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_masks_set_bit_n_minus_one() {
        assert_eq!(signal_mask(&[libc::SIGHUP]), 1);
        assert_eq!(signal_mask(&[libc::SIGCHLD, libc::SIGTERM]), (1 << 16) | (1 << 14));
        assert_eq!(signal_mask(&[0, 65, -1]), 0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_relro_range_lies_inside_the_executable_and_holds_this_vtable() {
        let (start, len) = relro_pages().expect("hull is linked with RELRO");
        assert_eq!(start % 4096, 0);
        assert!(len > 0 && len % 4096 == 0);
        // A trait object's vtable is relocated read-only data.
        let d: &dyn std::fmt::Debug = &1u8;
        // SAFETY: a &dyn is (data, vtable); only the address is read.
        let vtable = unsafe { std::mem::transmute::<&dyn std::fmt::Debug, [usize; 2]>(d) }[1];
        assert!((start..start + len).contains(&vtable), "vtable {vtable:#x} not in {start:#x}+{len:#x}");
    }
}
