//! Images: references, a content-addressed store, layer unpacking into
//! snapshots, the registry client, and rootfs assembly from snapshots.
//!
//! - [`reference`]: `busybox` → `docker.io/library/busybox:latest`.
//! - [`digest`]: `sha256:` content addresses, hashing while streaming.
//! - [`manifest`]: manifests, indexes, image configs (OCI and Docker schema2).
//! - [`store`]: blobs, image records, snapshots, prune, disk usage; [`lease`]: who uses what.
//! - [`unpack`]: layers into snapshots, safely (hostile layers refused).
//! - [`ingest`]: fetch what is missing, unpack, record (shared by pull and import).
//! - [`registry`]: pulls (OCI distribution / Docker v2 API), [`progress`] bars.
//! - [`layout`]: import/export of OCI layouts and docker-archives.
//! - [`rootfs`]: overlay of an image's snapshots; [`bundle`]: OCI bundles from images.
//! - [`cli`]: `hull image <sub>`.
pub mod bundle;
pub mod cli;
pub mod copy;
pub mod digest;
pub mod error;
pub mod hosts;
pub mod ingest;
pub mod layout;
pub mod lease;
pub mod manifest;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod store;
pub mod tls;
pub mod unpack;

pub use digest::Digest;
pub use error::ImageError;
pub use reference::Reference;
pub use store::Store;
