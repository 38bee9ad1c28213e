use super::*;
use crate::runtime::config::{ContainerSecurityContext, HugepageLimit};

fn cfg(cmd: &[&str]) -> ContainerConfig {
    ContainerConfig { command: cmd.iter().map(|s| s.to_string()).collect(), ..Default::default() }
}

fn caps_of(spec: &Spec) -> Vec<String> {
    let mut v: Vec<String> = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap()
        .bounding()
        .clone()
        .unwrap()
        .iter()
        .map(|c| serde_json::to_value(c).unwrap().as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn holder() -> HashMap<String, PathBuf> {
    ["net", "ipc", "uts", "pid"]
        .iter()
        .map(|t| (t.to_string(), PathBuf::from(format!("/proc/42/ns/{t}"))))
        .collect()
}

#[test]
fn process_takes_command_env_and_cwd() {
    let mut spec = base();
    let mut c = cfg(&["sh", "-c"]);
    c.args = vec!["echo hi".into()];
    c.envs = vec![("A".into(), "1".into()), ("PATH".into(), "/x".into())];
    c.working_dir = "/work".into();
    process(&mut spec, &c, None).unwrap();
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.args().as_ref().unwrap(), &["sh", "-c", "echo hi"]);
    assert_eq!(p.env().as_ref().unwrap(), &["A=1", "PATH=/x"]);
    assert_eq!(p.cwd(), Path::new("/work"));
    assert_eq!(p.terminal(), Some(false));
    // No command and no image config: refused, naming the field.
    let e = process(&mut base(), &cfg(&[]), None).unwrap_err();
    assert!(e.to_string().contains("command"), "{e}");
    let mut bad = cfg(&["x"]);
    bad.envs = vec![("A=B".into(), "1".into())];
    assert_eq!(process(&mut base(), &bad, None).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let mut rel = cfg(&["x"]);
    rel.working_dir = "work".into();
    assert!(process(&mut base(), &rel, None).unwrap_err().to_string().contains("working_dir"));
}

#[test]
fn user_prefers_container_then_pod_then_image() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n").unwrap();
    std::fs::write(dir.path().join("etc/group"), "root:x:0:\nextra:x:2000:app\n").unwrap();
    let uid_gid = |spec: &Spec| {
        let u = spec.process().as_ref().unwrap().user().clone();
        (u.uid(), u.gid(), u.additional_gids().clone().unwrap_or_default())
    };
    let mut spec = base();
    let mut c = cfg(&["x"]);
    c.security_context.run_as_username = Some("app".into());
    user(&mut spec, &c, None, dir.path(), (None, None, &[])).unwrap();
    assert_eq!(uid_gid(&spec).0, 1000);
    assert_eq!(uid_gid(&spec).1, 1001);
    let mut c = cfg(&["x"]);
    c.security_context.run_as_group = Some(7);
    c.security_context.supplemental_groups = vec![5, 5];
    user(&mut spec, &c, None, dir.path(), (Some(33), None, &[9])).unwrap();
    assert_eq!(uid_gid(&spec), (33, 7, vec![5]));
    user(&mut spec, &cfg(&["x"]), None, dir.path(), (None, None, &[9])).unwrap();
    assert_eq!(uid_gid(&spec), (0, 0, vec![9]));
    let mut c = cfg(&["x"]);
    c.security_context.run_as_non_root = true;
    assert!(user(&mut spec, &c, None, dir.path(), (None, None, &[]))
        .unwrap_err()
        .to_string()
        .contains("run_as_non_root"));
    let mut c = cfg(&["x"]);
    c.security_context.run_as_user = Some(-1);
    assert_eq!(user(&mut spec, &c, None, dir.path(), (None, None, &[])).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let mut c = cfg(&["x"]);
    c.security_context.run_as_username = Some("nobody-here".into());
    assert!(user(&mut spec, &c, None, dir.path(), (None, None, &[])).is_err());
}

#[test]
fn capabilities_add_drop_all_and_privileged() {
    let mut spec = base();
    capabilities(&mut spec, &Capabilities::default(), false).unwrap();
    assert_eq!(caps_of(&spec).len(), DEFAULT_CAPS.len());
    capabilities(&mut spec, &Capabilities { add: vec!["sys_admin".into()], drop: vec!["CAP_KILL".into(), "chown".into()] }, false).unwrap();
    let c = caps_of(&spec);
    assert!(c.contains(&"CAP_SYS_ADMIN".to_string()) && !c.contains(&"CAP_KILL".to_string()) && !c.contains(&"CAP_CHOWN".to_string()));
    capabilities(&mut spec, &Capabilities { add: vec!["NET_ADMIN".into()], drop: vec!["ALL".into()] }, false).unwrap();
    assert_eq!(caps_of(&spec), ["CAP_NET_ADMIN"]);
    capabilities(&mut spec, &Capabilities::default(), true).unwrap();
    let mut bounding: Vec<String> = caps::read(None, caps::CapSet::Bounding).unwrap().iter().map(|c| c.to_string()).collect();
    bounding.sort();
    assert_eq!(caps_of(&spec), bounding, "privileged: this process's bounding set");
    let e = capabilities(&mut spec, &Capabilities { add: vec!["CAP_BOGUS".into()], drop: vec![] }, false).unwrap_err();
    assert!(e.to_string().contains("CAP_BOGUS"), "{e}");
}

#[test]
fn namespaces_follow_the_options() {
    let types = |spec: &Spec| -> Vec<(String, Option<PathBuf>)> {
        spec.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .clone()
            .unwrap()
            .iter()
            .map(|n| (format!("{:?}", n.typ()), n.path().clone()))
            .collect()
    };
    let mut spec = base();
    namespaces(&mut spec, &NamespaceOptions::default(), &holder(), None).unwrap();
    let t = types(&spec);
    assert!(t.contains(&("Network".into(), Some("/proc/42/ns/net".into()))));
    assert!(t.contains(&("Uts".into(), Some("/proc/42/ns/uts".into()))));
    assert!(t.contains(&("Ipc".into(), Some("/proc/42/ns/ipc".into()))));
    assert!(t.contains(&("Pid".into(), None)));
    let shared = NamespaceOptions { pid: NamespaceMode::Pod, network: NamespaceMode::Node, ipc: NamespaceMode::Node, target_id: None };
    namespaces(&mut spec, &shared, &holder(), None).unwrap();
    let t = types(&spec);
    assert!(t.contains(&("Pid".into(), Some("/proc/42/ns/pid".into()))));
    assert!(!t.iter().any(|(n, _)| n == "Network" || n == "Ipc" || n == "Uts"));
    // POD mode without a holder namespace is a precondition failure.
    let mut no_pid = holder();
    no_pid.remove("pid");
    let e = namespaces(&mut spec, &shared, &no_pid, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
    let target = NamespaceOptions { pid: NamespaceMode::Target, ..Default::default() };
    assert_eq!(namespaces(&mut spec, &target, &holder(), None).unwrap_err().kind(), ErrorKind::InvalidArgument);
    namespaces(&mut spec, &target, &holder(), Some(Path::new("/proc/7/ns/pid"))).unwrap();
    assert!(types(&spec).contains(&("Pid".into(), Some("/proc/7/ns/pid".into()))));
    // A POD-network container of a host-network sandbox (no holder net
    // or uts) shares the node's network, as containerd runs it.
    let mut host_net = holder();
    host_net.remove("net");
    host_net.remove("uts");
    namespaces(&mut spec, &NamespaceOptions::default(), &host_net, None).unwrap();
    assert!(!types(&spec).iter().any(|(n, _)| n == "Network" || n == "Uts"));
    let own_net = NamespaceOptions { network: NamespaceMode::Container, ..Default::default() };
    assert_eq!(namespaces(&mut spec, &own_net, &holder(), None).unwrap_err().kind(), ErrorKind::Unimplemented);
}

#[test]
fn mounts_have_propagation_readonly_and_replace_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = base();
    let list = vec![
        Mount {
            container_path: "/data".into(),
            host_path: dir.path().into(),
            readonly: true,
            propagation: MountPropagation::HostToContainer,
            tmpfs: false,
            ..Default::default()
        },
        Mount {
            container_path: "/dev/shm".into(),
            host_path: dir.path().into(),
            readonly: false,
            propagation: MountPropagation::Bidirectional,
            tmpfs: false,
            ..Default::default()
        },
        Mount { container_path: "/scratch".into(), tmpfs: true, ..Default::default() },
        Mount {
            container_path: "/rro".into(),
            host_path: dir.path().into(),
            readonly: true,
            recursive_readonly: true,
            ..Default::default()
        },
    ];
    mounts(&mut spec, &list).unwrap();
    let ms = spec.mounts().clone().unwrap();
    let find = |d: &str| ms.iter().filter(|m| m.destination() == Path::new(d)).cloned().collect::<Vec<_>>();
    assert_eq!(find("/data")[0].options().clone().unwrap(), ["rbind", "rslave", "ro"]);
    let shm = find("/dev/shm");
    assert_eq!(shm.len(), 1, "the default /dev/shm is replaced");
    assert_eq!(shm[0].options().clone().unwrap(), ["rbind", "rshared", "rw"]);
    assert_eq!(find("/scratch")[0].typ().as_deref(), Some("tmpfs"));
    assert_eq!(find("/rro")[0].options().clone().unwrap(), ["rbind", "rprivate", "ro", "rro"]);
    for bad in [
        Mount { container_path: "data".into(), host_path: dir.path().into(), ..Default::default() },
        Mount { container_path: "/a/../b".into(), host_path: dir.path().into(), ..Default::default() },
        Mount { container_path: "/a".into(), host_path: dir.path().join("missing"), ..Default::default() },
        Mount { container_path: "/a".into(), host_path: "rel".into(), ..Default::default() },
    ] {
        let e = mounts(&mut base(), &[bad]).unwrap_err();
        assert!(e.to_string().contains("mounts[0]"), "{e}");
    }
    etc_files(&mut spec, Path::new("/run/x/etc"), true);
    let ms = spec.mounts().clone().unwrap();
    let hosts = ms.iter().find(|m| m.destination() == Path::new("/etc/hosts")).unwrap();
    assert_eq!(hosts.source().as_deref(), Some(Path::new("/run/x/etc/hosts")));
    assert!(hosts.options().clone().unwrap().contains(&"ro".to_string()));
}

#[test]
fn devices_are_made_and_allowed() {
    let mut spec = base();
    devices(&mut spec, &[Device { container_path: "/dev/mynull".into(), host_path: "/dev/null".into(), permissions: "rw".into() }])
        .unwrap();
    let linux = spec.linux().clone().unwrap();
    let d = &linux.devices().clone().unwrap()[0];
    assert_eq!((d.major(), d.minor(), d.typ()), (1, 3, LinuxDeviceType::C));
    let rules = linux.resources().clone().unwrap().devices().clone().unwrap();
    let last = rules.last().unwrap();
    assert_eq!((last.allow(), last.major(), last.access().as_deref()), (true, Some(1), Some("rw")));
    let e =
        devices(&mut base(), &[Device { container_path: "/dev/x".into(), host_path: "/etc/hostname".into(), permissions: String::new() }])
            .unwrap_err();
    assert!(e.to_string().contains("not a device"), "{e}");
    let e = devices(&mut base(), &[Device { container_path: "/dev/x".into(), host_path: "/dev/null".into(), permissions: "rx".into() }])
        .unwrap_err();
    assert!(e.to_string().contains("permissions"), "{e}");
}

#[test]
fn resources_map_onto_oci_fields() {
    let mut spec = base();
    let r = LinuxResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 64 << 20,
        oom_score_adj: 500,
        cpuset_cpus: "0".into(),
        hugepage_limits: vec![HugepageLimit { page_size: "2MB".into(), limit: 0 }],
        ..Default::default()
    };
    resources(&mut spec, &r).unwrap();
    let res = spec.linux().clone().unwrap().resources().clone().unwrap();
    let cpu = res.cpu().clone().unwrap();
    assert_eq!((cpu.quota(), cpu.period(), cpu.shares(), cpu.cpus().as_deref()), (Some(50_000), Some(100_000), Some(512), Some("0")));
    assert_eq!(res.memory().unwrap().limit(), Some(64 << 20));
    assert_eq!(res.hugepage_limits().clone().unwrap()[0].page_size(), "2MB");
    assert_eq!(spec.process().as_ref().unwrap().oom_score_adj(), Some(500));
    // The default device rule stays.
    assert!(!res.devices().clone().unwrap().is_empty());
    let bad = LinuxResources { oom_score_adj: 2000, ..Default::default() };
    assert!(resources(&mut base(), &bad).unwrap_err().to_string().contains("oom_score_adj"));
    let bad = LinuxResources { cpu_shares: -1, ..Default::default() };
    assert_eq!(resources(&mut base(), &bad).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn paths_privileged_and_seccomp() {
    let mut spec = base();
    paths(&mut spec, Some(&["/proc/x".to_string()]), None, false).unwrap();
    let linux = spec.linux().clone().unwrap();
    assert_eq!(linux.masked_paths().clone().unwrap(), ["/proc/x"]);
    assert!(linux.readonly_paths().clone().unwrap().contains(&"/proc/sys".to_string()));
    paths(&mut spec, None, None, true).unwrap();
    assert!(spec.linux().as_ref().unwrap().masked_paths().is_none());
    assert!(paths(&mut base(), Some(&["rel".to_string()]), None, false).is_err());

    let mut spec = base();
    privileged(&mut spec);
    let sys = spec.mounts().clone().unwrap().into_iter().find(|m| m.destination() == Path::new("/sys")).unwrap();
    assert!(!sys.options().clone().unwrap().contains(&"ro".to_string()));

    let mut spec = base();
    capabilities(&mut spec, &Capabilities::default(), false).unwrap();
    seccomp(&mut spec, &SecurityProfile::RuntimeDefault, false).unwrap();
    assert!(spec.linux().as_ref().unwrap().seccomp().is_some());
    seccomp(&mut spec, &SecurityProfile::RuntimeDefault, true).unwrap();
    assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
    let e = seccomp(&mut spec, &SecurityProfile::Localhost("/nonexistent.json".into()), false).unwrap_err();
    assert!(e.to_string().contains("seccomp"), "{e}");
}

#[test]
fn build_validates_the_whole_spec() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(&["sh"]);
    c.security_context = ContainerSecurityContext { no_new_privs: true, readonly_rootfs: true, ..Default::default() };
    let inp = SpecInputs {
        config: &c,
        image: None,
        rootfs: dir.path(),
        holder_ns: &holder(),
        target_pid_ns: None,
        etc_dir: Some(Path::new("/run/x/etc")),
        cgroups_path: "/hull/pod-1/c".into(),
        pod_user: (None, None, &[]),
        annotations: [("io.kubernetes.container.name".to_string(), "c".to_string())].into_iter().collect(),
    };
    let spec = build(&inp).unwrap();
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(spec.process().as_ref().unwrap().no_new_privileges(), Some(true));
    assert_eq!(spec.linux().as_ref().unwrap().cgroups_path().as_deref(), Some(Path::new("/hull/pod-1/c")));
    assert!(spec.hostname().is_none());
    let mut tty = c.clone();
    tty.tty = true;
    let spec = build(&SpecInputs { config: &tty, ..inp }).unwrap();
    assert_eq!(spec.process().as_ref().unwrap().terminal(), Some(true));
}

#[test]
fn cdi_edits_reach_the_spec() {
    use crate::runtime::cdi::{CdiEdits, CdiHook, CdiMount, DeviceNode};
    let mut spec = base();
    process(&mut spec, &ContainerConfig { envs: vec![("A".into(), "container".into())], ..cfg(&["true"]) }, None).unwrap();
    let none = spec.clone();
    cdi(&mut spec, &CdiEdits::default()).unwrap();
    assert_eq!(spec, none, "no devices, no edits");
    let e = CdiEdits {
        devices: vec!["v.com/c=a".into()],
        env: vec!["A=cdi".into(), "B=1".into()],
        device_nodes: vec![DeviceNode {
            path: "/dev/x".into(),
            typ: 'c',
            major: 1,
            minor: 3,
            permissions: "rw".into(),
            ..Default::default()
        }],
        mounts: vec![CdiMount { host_path: "/srv/lib".into(), container_path: "/lib/x".into(), options: vec!["ro".into(), "bind".into()] }],
        hooks: vec![CdiHook { hook_name: "createContainer".into(), path: "/bin/hook".into(), ..Default::default() }],
        additional_gids: vec![44],
    };
    cdi(&mut spec, &e).unwrap();
    let p = spec.process().as_ref().unwrap();
    let env = p.env().clone().unwrap();
    assert!(env.contains(&"A=cdi".to_string()) && !env.contains(&"A=container".to_string()) && env.contains(&"B=1".to_string()), "{env:?}");
    assert_eq!(p.user().additional_gids().clone().unwrap(), [44]);
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(linux.devices().as_ref().unwrap()[0].path(), Path::new("/dev/x"));
    let rule = linux.resources().as_ref().unwrap().devices().as_ref().unwrap().last().unwrap().clone();
    assert_eq!((rule.major(), rule.minor(), rule.access().clone()), (Some(1), Some(3), Some("rw".to_string())));
    let m = spec.mounts().as_ref().unwrap().iter().find(|m| m.destination() == Path::new("/lib/x")).unwrap();
    assert_eq!(m.options().clone().unwrap(), ["ro", "bind"]);
    assert_eq!(spec.hooks().as_ref().unwrap().create_container().as_ref().unwrap()[0].path(), Path::new("/bin/hook"));
}
