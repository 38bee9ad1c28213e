//! `hull image <sub>`: the image commands. Flags are parsed here so that
//! the runtime's command line (src/cli) only carries one variant for them.
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::error::{ImageError, Result};
use super::layout;
use super::store::{ImageRecord, Store};

#[derive(Args, Debug)]
pub struct ImageCmd {
    #[command(subcommand)]
    pub command: ImageSub,
}

#[derive(Subcommand, Debug)]
pub enum ImageSub {
    /// Pull an image from a registry (the manifest for this host's platform)
    Pull {
        /// Image reference: [registry[:port]/]repository[:tag][@sha256:digest]
        reference: String,
        /// USER:PASSWORD for Basic auth or the registry's token server
        #[arg(long, env = "HULL_REGISTRY_AUTH", hide_env_values = true)]
        user: Option<String>,
        /// Registries (host[:port]) to reach over plain HTTP; loopback ones always are
        #[arg(long = "insecure-registry", env = "HULL_INSECURE_REGISTRIES", value_delimiter = ',')]
        insecure: Vec<String>,
        /// Platform to pull from a multi-platform image: os/arch[/variant]
        #[arg(long)]
        platform: Option<String>,
        /// Directory of containerd-style REGISTRY/hosts.toml files (mirrors, plain-HTTP hosts, ca, client, skip_verify)
        #[arg(long = "hosts-dir", env = "HULL_REGISTRY_HOSTS_DIR", default_value = "/etc/hull/certs.d")]
        hosts_dir: PathBuf,
        /// No progress bars
        #[arg(short, long)]
        quiet: bool,
    },
    /// Import an OCI image layout (directory or tarball) or a docker-archive tarball
    Import {
        /// OCI image layout directory, or a tarball of one or a docker-archive
        path: PathBuf,
        /// Name for an image the archive does not name (or names by tag only)
        #[arg(long)]
        name: Option<String>,
    },
    /// Write an image to an OCI image layout directory (created or added to)
    Export {
        /// Image name or id
        image: String,
        /// The OCI image layout directory
        dir: PathBuf,
    },
    /// List images
    #[command(alias = "list")]
    Ls {
        /// Output format
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Print only the names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print an image's record, manifest, config and snapshots as JSON
    Inspect {
        /// Image name or id
        image: String,
    },
    /// Remove image names; an image whose last name goes is deleted. An
    /// image a pod or a mounted rootfs uses is refused (unless --force)
    #[command(alias = "remove")]
    Rm {
        /// Image names or ids
        images: Vec<String>,
        /// Remove an image by id even if several names refer to it, and
        /// even while it is in use (its content in use stays until then)
        #[arg(short, long)]
        force: bool,
    },
    /// Remove blobs, snapshots and temp files no image refers to
    Prune,
    /// Make BUNDLE an OCI bundle of IMAGE: config.json from the image config,
    /// rootfs an overlay of its layers with a writable layer in the bundle
    Bundle {
        /// Image name or id
        image: String,
        /// The bundle directory to make (created if missing)
        bundle: PathBuf,
        /// Replace the image's Entrypoint and Cmd (Kubernetes `command`; repeat for each word)
        #[arg(long)]
        command: Vec<String>,
        /// Environment to add or replace (KEY=VALUE)
        #[arg(short, long)]
        env: Vec<String>,
        /// Copy the layers into BUNDLE/rootfs instead of mounting an overlay
        #[arg(long)]
        copy: bool,
        /// Replace the image's Cmd (Kubernetes `args`)
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Undo `bundle`: unmount the rootfs, remove it, its writable layer and config.json
    Unbundle {
        /// A bundle directory `bundle` made
        bundle: PathBuf,
    },
    /// Mount IMAGE at TARGET: an overlay of its layers, writable into RW_DIR/upper
    Mount {
        /// Image name or id
        image: String,
        /// Directory to mount the image's rootfs on
        target: PathBuf,
        /// Directory for the writable layer (upper and work dirs; same filesystem)
        #[arg(long = "rw-dir")]
        rw_dir: PathBuf,
    },
    /// Unmount what `mount` mounted at TARGET (the writable layer is kept)
    Umount {
        /// The directory `mount` mounted on
        target: PathBuf,
    },
    /// Disk use of the image store (bytes, inodes)
    Df {
        /// Output format
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
}

/// Run an image command against the store at `root`.
pub fn run(root: &Path, cmd: &ImageCmd) -> Result<i32> {
    let store = Store::open(root)?;
    match &cmd.command {
        ImageSub::Pull { reference, user, insecure, platform, hosts_dir, quiet } => {
            let r = super::Reference::parse(reference)?;
            let credentials = match user {
                Some(u) => {
                    let (name, pass) = u
                        .split_once(':')
                        .ok_or_else(|| ImageError::InvalidArgument("--user: expected USER:PASSWORD".into()))?;
                    Some((name.to_string(), pass.to_string()))
                }
                None => None,
            };
            let platform = platform.as_deref().map(parse_platform).transpose()?;
            let opts = super::registry::PullOptions {
                insecure: insecure.clone(),
                credentials,
                platform,
                hosts_dir: Some(hosts_dir.clone()),
                ..Default::default()
            };
            let started = std::time::Instant::now();
            let bars = super::progress::Bars::new(*quiet);
            let (rec, rep) = super::registry::pull(&store, &r, &opts, &bars)?;
            bars.clear();
            println!(
                "pulled {} ({}): {} blobs fetched ({}), {} already present; {} layers unpacked, {} reused; {:.1}s",
                rec.name,
                rec.manifest,
                rep.fetched_blobs,
                human_bytes(rep.fetched_bytes),
                rep.reused_blobs,
                rep.unpacked_layers,
                rep.reused_snapshots,
                started.elapsed().as_secs_f64()
            );
        }
        ImageSub::Import { path, name } => {
            for rec in layout::import(&store, path, name.as_deref())? {
                println!("imported {} ({})", rec.name, rec.config.short());
            }
        }
        ImageSub::Export { image, dir } => {
            let rec = one(&store, image)?;
            layout::export(&store, &rec, dir)?;
            println!("exported {} to {}", rec.name, dir.display());
        }
        ImageSub::Ls { format, quiet } => ls(&store, format, *quiet)?,
        ImageSub::Inspect { image } => inspect(&store, image)?,
        ImageSub::Rm { images, force } => {
            for image in images {
                rm(&store, image, *force)?;
            }
        }
        ImageSub::Bundle { image, bundle, command, env, copy, args } => {
            let rec = one(&store, image)?;
            let opts = super::bundle::BundleOptions { command: command.clone(), args: args.clone(), env: env.clone(), copy: *copy };
            super::bundle::create(&store, &rec, bundle, &opts)?;
            println!("bundle {} of {}", bundle.display(), rec.name);
        }
        ImageSub::Unbundle { bundle } => super::bundle::remove(&store, bundle)?,
        ImageSub::Mount { image, target, rw_dir } => {
            let rec = one(&store, image)?;
            std::fs::create_dir_all(target).map_err(|e| ImageError::io(format!("create {}", target.display()), e))?;
            let abs = |p: &Path| std::fs::canonicalize(p).map_err(|e| ImageError::io(format!("resolve {}", p.display()), e));
            std::fs::create_dir_all(rw_dir).map_err(|e| ImageError::io(format!("create {}", rw_dir.display()), e))?;
            super::rootfs::mount_rootfs(&store, &rec, &abs(target)?, &abs(rw_dir)?)?;
        }
        ImageSub::Umount { target } => {
            let t = std::fs::canonicalize(target).unwrap_or_else(|_| target.clone());
            super::rootfs::unmount_rootfs(&store, &t)?;
        }
        ImageSub::Prune => {
            let r = store.prune()?;
            println!("removed {} blobs, {} snapshots, {} temp files: {} freed", r.blobs, r.snapshots, r.temp, human_bytes(r.bytes));
        }
        ImageSub::Df { format } => {
            let recs = store.records()?;
            let u = store.usage();
            if format == "json" {
                print_json(&json!({"root": store.root(), "images": recs.images.len(), "bytes": u.bytes, "inodes": u.inodes}))?;
            } else {
                println!("ROOT\tIMAGES\tSIZE\tINODES");
                println!("{}\t{}\t{}\t{}", store.root().display(), recs.images.len(), human_bytes(u.bytes), u.inodes);
            }
        }
    }
    Ok(0)
}

fn parse_platform(s: &str) -> Result<super::manifest::Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(super::manifest::Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        }),
        _ => Err(ImageError::InvalidArgument(format!("--platform {s:?}: expected os/arch[/variant]"))),
    }
}

/// The one image `key` (name or id) names.
pub fn one(store: &Store, key: &str) -> Result<ImageRecord> {
    let recs = store.records()?;
    let found = store.find(&recs, key);
    match found.as_slice() {
        [] => Err(ImageError::NotFound(key.into())),
        [one] => Ok(one.clone()),
        many => {
            // Several names of the same image: any will do.
            Ok(many[0].clone())
        }
    }
}

fn image_size(store: &Store, rec: &ImageRecord) -> u64 {
    store
        .manifest(&rec.manifest)
        .map(|m| m.layers.iter().map(|l| l.size).sum::<u64>() + m.config.size)
        .unwrap_or(0)
}

fn ls(store: &Store, format: &str, quiet: bool) -> Result<()> {
    let recs = store.records()?;
    if quiet {
        for name in recs.images.keys() {
            println!("{name}");
        }
        return Ok(());
    }
    if format == "json" {
        let list: Vec<_> = recs
            .images
            .values()
            .map(|r| json!({"name": r.name, "id": r.config, "manifest": r.manifest, "index": r.index, "created": r.created, "size": image_size(store, r)}))
            .collect();
        return print_json(&json!(list));
    }
    let mut out = String::from("NAME\tIMAGE ID\tCREATED\tSIZE\n");
    for r in recs.images.values() {
        out.push_str(&format!("{}\t{}\t{}\t{}\n", r.name, r.config.short(), r.created, human_bytes(image_size(store, r))));
    }
    print!("{out}");
    Ok(())
}

fn inspect(store: &Store, key: &str) -> Result<()> {
    let rec = one(store, key)?;
    let recs = store.records()?;
    let names: Vec<&String> = recs.images.values().filter(|r| r.config == rec.config).map(|r| &r.name).collect();
    let manifest: serde_json::Value = super::manifest::parse("manifest", &store.read_blob(&rec.manifest)?)?;
    let config: serde_json::Value = super::manifest::parse("config", &store.read_blob(&rec.config)?)?;
    let chain = store.chain_ids(&rec)?;
    let snapshots: Vec<_> = chain
        .iter()
        .map(|c| {
            let dir = store.snapshot_dir(c);
            json!({"chain_id": c, "path": dir.join("fs"), "present": dir.join("fs").is_dir()})
        })
        .collect();
    print_json(&json!({
        "id": rec.config, "names": names, "manifest_digest": rec.manifest, "index_digest": rec.index,
        "created": rec.created, "size": image_size(store, &rec),
        "manifest": manifest, "config": config, "snapshots": snapshots,
    }))
}

/// Untag by name; by id, remove every name (with --force when there are
/// several). When no name is left for an image, its blobs and snapshots
/// are garbage-collected (as `docker rmi` deletes the image). An image in
/// use is refused, unless forced.
fn rm(store: &Store, key: &str, force: bool) -> Result<()> {
    let by_name = {
        let recs = store.records()?;
        let found = store.find(&recs, key);
        let is_name =
            found.len() == 1 && (found[0].name == key || super::Reference::parse(key).is_ok_and(|r| r.to_string() == found[0].name));
        if found.is_empty() {
            return Err(ImageError::NotFound(key.into()));
        }
        if !is_name && found.len() > 1 && !force {
            let names: Vec<_> = found.iter().map(|r| r.name.as_str()).collect();
            return Err(ImageError::InvalidArgument(format!(
                "image {key} is referenced by several names ({}); remove them by name or use --force",
                names.join(", ")
            )));
        }
        found
    };
    let names: Vec<String> = by_name.iter().map(|r| r.name.clone()).collect();
    let deleted = store.remove_names(&names, !force)?;
    for n in &names {
        println!("Untagged: {n}");
    }
    for id in &deleted {
        println!("Deleted: {id}");
    }
    Ok(())
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v).map_err(|e| ImageError::json("write JSON", e))?;
    let _ = writeln!(out);
    Ok(())
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
