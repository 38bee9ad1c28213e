//! Errors of the network room. A plugin's own error (CNI error JSON) keeps
//! its code, message and details, so the user sees what the plugin said.
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// No usable network config file in the config directory.
    #[error("no CNI network config (*.conflist, *.conf, *.json) in {}", dir.display())]
    NoConfig { dir: PathBuf },
    /// A config file could not be read.
    #[error("CNI config {}: {source}", path.display())]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A config file is not valid JSON or a field is wrong. `field` is the
    /// JSON path of the bad field ("." for the document itself).
    #[error("CNI config {}: field {field}: {message}", path.display())]
    ConfigInvalid { path: PathBuf, field: String, message: String },
    /// No executable named like the plugin's `type` in the plugin dirs.
    #[error("CNI plugin {plugin:?} not found in {}", display_dirs(dirs))]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    /// The plugin reported an error (CNI error JSON on stdout).
    #[error("CNI plugin {plugin:?} {command} failed (code {code}): {msg}{}", details_suffix(details))]
    Plugin { plugin: String, command: &'static str, code: u32, msg: String, details: String },
    /// The plugin failed without a CNI error: killed, or exited non-zero
    /// with something else than error JSON on stdout.
    #[error("CNI plugin {plugin:?} {command} failed ({status}): {output}")]
    PluginFailed { plugin: String, command: &'static str, status: String, output: String },
    #[error("CNI plugin {plugin:?} {command} did not finish within {timeout:?}; killed")]
    PluginTimeout { plugin: String, command: &'static str, timeout: Duration },
    /// A plugin's result is not a CNI result.
    #[error("CNI plugin {plugin:?} {command} returned an invalid result: {message}")]
    BadResult { plugin: String, command: &'static str, message: String },
    /// The operation is not possible with this attachment (CHECK before
    /// ADD, CHECK on an old cniVersion...).
    #[error("{0}")]
    InvalidRequest(String),
    #[error("invalid port mapping {spec:?}: {why}")]
    InvalidPortMapping { spec: String, why: String },
    /// A syscall or file operation failed (netns creation, plugin spawn...).
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl NetworkError {
    pub fn sys(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        NetworkError::Sys { what: what.into(), source: source.into() }
    }
}

pub type Result<T, E = NetworkError> = std::result::Result<T, E>;

fn display_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}
