//! Dev containers: from a project's `devcontainer.json` to a running,
//! set-up container, through a docker-compatible CLI (Docker or Podman).
//!
//! - [`config`] finds and checks devcontainer.json ([`jsonc`] parses it with
//!   line:column errors);
//! - [`vars`] substitutes `${…}` variables in the reference CLI's phases;
//! - [`metadata`] merges image metadata by the spec's rules;
//! - [`features`] installs Dev Container Features (local, or from an OCI
//!   registry through [`oci`], or a tarball URL through [`tarball`]) into an
//!   image layer;
//! - [`compose`] runs Docker Compose configurations;
//! - [`engine`] drives `docker`/`podman`;
//! - [`lifecycle`] runs the lifecycle commands;
//! - [`uid`] gives the remote user the local UID/GID (`updateRemoteUserUID`);
//! - [`up`] ties them together: `up`, `stop`, `down`, finding a folder's
//!   container.
//!
//! Putting the yonder server into the container is not here: the target
//! crate does it over `<engine> exec -i`, the same way it does over SSH.

pub mod compose;
pub mod config;
pub mod doctor;
pub mod engine;
pub mod features;
pub mod jsonc;
pub mod lifecycle;
pub mod metadata;
pub mod oci;
pub mod tarball;
pub mod uid;
pub mod up;
pub mod vars;
