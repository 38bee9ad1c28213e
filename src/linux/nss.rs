//! Name lookups (glibc's NSS) in a statically linked hull.
//!
//! hull is linked statically (see build.rs). glibc's `files` and `dns`
//! sources are part of its static archive, but any other source
//! nsswitch.conf names (`systemd`, `sss`, `ldap`, `resolve`, `mdns4`...)
//! would be dlopen'ed: a shared module built against the system's libc.so,
//! loaded next to the copy of glibc hull carries, which works only while the
//! two are the same glibc release. So a static hull resolves from the
//! built-in sources alone, whatever the host's nsswitch.conf says, as runc
//! (Go's pure user and DNS code) does: users and groups from /etc/passwd and
//! /etc/group, hosts from /etc/hosts, then DNS by /etc/resolv.conf. The
//! lookups hull makes are the daemon's `--socket-group` name (a number
//! needs none) and the registry host names of image pulls.

/// Make the databases hull looks up use only glibc's built-in sources.
/// Called once, before any lookup and before any thread is started
/// (glibc's `__nss_configure_lookup` is not thread-safe), by the commands
/// that may look a name up; the runtime commands a container start runs
/// never do.
#[cfg(target_feature = "crt-static")]
pub fn builtin_sources_only() {
    extern "C" {
        // glibc (nss/nsswitch.c): replaces the sources nsswitch.conf gives
        // one database; returns -1 for an unknown database name.
        fn __nss_configure_lookup(db: *const libc::c_char, sources: *const libc::c_char) -> libc::c_int;
    }
    for (db, sources) in [(c"passwd", c"files"), (c"group", c"files"), (c"hosts", c"files dns")] {
        // SAFETY: both are NUL-terminated static strings; glibc copies what
        // it keeps. No other thread exists yet (see above).
        let rc = unsafe { __nss_configure_lookup(db.as_ptr(), sources.as_ptr()) };
        if rc != 0 {
            // Before logging is set up (the command line is not parsed
            // yet), so straight to stderr.
            eprintln!("hull: name lookups: cannot restrict {db:?} to {sources:?}");
        }
    }
}

/// A dynamically linked hull uses the system's libc and its NSS modules as
/// configured.
#[cfg(not(target_feature = "crt-static"))]
pub fn builtin_sources_only() {}
