//! `hull network`: CNI ADD/DEL/CHECK and pinned network namespaces by
//! hand, for manual use and for testing the pod layer's networking.
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::error::{Error, Result, SysContext};
use crate::network::{self, Attachment, CniConfig, CniOptions, PortMapping};

#[derive(Args, Debug)]
pub struct NetworkCmd {
    #[command(subcommand)]
    pub op: NetworkOp,
}

#[derive(Subcommand, Debug)]
pub enum NetworkOp {
    /// CNI ADD: attach the netns to the network; prints the result JSON
    Add(CniArgs),
    /// CNI DEL (idempotent); with --record, from the stored record
    Del(CniArgs),
    /// CNI CHECK, from the record written by `add --record`
    Check(CniArgs),
    /// Create a pinned network namespace with lo up; prints its path
    NetnsCreate {
        /// Name of the pinned namespace (a file in --dir)
        name: String,
        /// Directory for the netns file (default: <root>/netns)
        #[arg(long)]
        dir: Option<PathBuf>,
        /// CNI plugin directory for the loopback plugin (repeatable)
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
    },
    /// Unmount and remove a pinned network namespace (idempotent)
    NetnsRemove {
        /// The pinned namespace file `netns-create` printed
        path: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct CniArgs {
    /// Path of the network namespace (e.g. from `network netns-create`)
    #[arg(long)]
    pub netns: Option<PathBuf>,
    /// Container (pod) id passed as CNI_CONTAINERID
    #[arg(long)]
    pub id: Option<String>,
    /// Interface name inside the netns (CNI_IFNAME)
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
    /// Config directory; its first *.conflist/*.conf/*.json is used
    #[arg(long = "conf-dir", default_value = network::config::DEFAULT_CONF_DIR)]
    pub conf_dir: PathBuf,
    /// Plugin directory (repeatable; default /usr/lib/cni and /opt/cni/bin)
    #[arg(long = "plugin-dir")]
    pub plugin_dirs: Vec<PathBuf>,
    /// [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp|sctp] (repeatable)
    #[arg(long = "port-mapping")]
    pub port_mappings: Vec<String>,
    /// Attachment record: written by add, used (and removed) by del, read by check
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Time limit per plugin call, in seconds
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

pub fn run(root: &Path, cmd: &NetworkCmd) -> Result<i32> {
    match &cmd.op {
        NetworkOp::Add(a) => {
            let mut att = new_attachment(a)?;
            if let Some(r) = &a.record {
                write_record(r, &att)?;
            }
            let added = att.add();
            if let Some(r) = &a.record {
                match &added {
                    Ok(_) => write_record(r, &att)?,
                    // The failed ADD was rolled back: nothing to record.
                    Err(_) => {
                        let _ = std::fs::remove_file(r);
                    }
                }
            }
            added?;
            print(att.result.as_ref().unwrap_or(&serde_json::Value::Null))?;
        }
        NetworkOp::Del(a) => {
            let att = match a.record.as_deref().filter(|r| r.exists()) {
                Some(r) => read_record(r)?,
                None => new_attachment(a)?,
            };
            att.del()?;
            if let Some(r) = &a.record {
                let _ = std::fs::remove_file(r);
            }
        }
        NetworkOp::Check(a) => {
            let r = a
                .record
                .as_deref()
                .ok_or_else(|| Error::InvalidArgument("check needs the ADD result: pass the --record written by add".into()))?;
            read_record(r)?.check()?;
        }
        NetworkOp::NetnsCreate { name, dir, plugin_dirs } => {
            let dir = dir.clone().unwrap_or_else(|| root.join("netns"));
            let opts = options(Path::new(network::config::DEFAULT_CONF_DIR), plugin_dirs, 30);
            let path = network::create_pod_netns(&dir, name, &opts)?;
            println!("{}", path.display());
        }
        NetworkOp::NetnsRemove { path } => network::remove_netns(path)?,
    }
    Ok(0)
}

fn options(conf_dir: &Path, plugin_dirs: &[PathBuf], timeout: u64) -> CniOptions {
    let mut opts = CniOptions { conf_dir: conf_dir.to_path_buf(), timeout: Duration::from_secs(timeout), ..Default::default() };
    if !plugin_dirs.is_empty() {
        opts.plugin_dirs = plugin_dirs.to_vec();
    }
    opts
}

fn new_attachment(a: &CniArgs) -> Result<Attachment> {
    let netns = a.netns.as_deref().ok_or_else(|| Error::InvalidArgument("--netns is required".into()))?;
    let id = a.id.as_deref().ok_or_else(|| Error::InvalidArgument("--id is required".into()))?;
    let config = CniConfig::discover(&options(&a.conf_dir, &a.plugin_dirs, a.timeout))?;
    let mut att = config.attachment(id, netns, &a.ifname);
    att.port_mappings = a.port_mappings.iter().map(|s| s.parse::<PortMapping>()).collect::<Result<_, _>>()?;
    Ok(att)
}

fn write_record(path: &Path, att: &Attachment) -> Result<()> {
    let text = serde_json::to_vec_pretty(att).map_err(|e| Error::InvalidState(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).sys_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).sys_context(|| format!("rename {} to {}", tmp.display(), path.display()))
}

fn read_record(path: &Path) -> Result<Attachment> {
    let text = std::fs::read(path).sys_context(|| format!("read {}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
}

fn print(v: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::InvalidState(e.to_string()))?;
    println!("{text}");
    Ok(())
}
