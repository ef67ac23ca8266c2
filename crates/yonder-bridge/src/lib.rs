//! The SSH bridge: an SSH server whose sessions, files and port forwards
//! are served by a yonder target.
//!
//! `yonder ssh-proxy TARGET` runs [`serve`] on its stdin/stdout, so any SSH
//! client can reach any yonder target through `ProxyCommand`: the client
//! speaks SSH to us, and each of its requests becomes a call on a
//! [`yonder_client::Client`] connected to the target.
//!
//! | SSH request                      | served by                                   |
//! |----------------------------------|---------------------------------------------|
//! | `exec`                           | exec of the login shell `-c COMMAND`        |
//! | `shell`, `pty-req`, `window-change`, `env` | a yonder terminal (login shell)   |
//! | `exec` after `pty-req`           | a yonder terminal running `SHELL -c COMMAND`|
//! | `subsystem sftp`                 | `yonder server sftp` on the target ([`sftp`]) |
//! | `direct-tcpip` (`-L`, `-D`)      | a forward dial from the target              |
//! | `tcpip-forward` (`-R`)           | a forward listener on the target            |
//!
//! Exit codes travel as `exit-status`, deaths by signal as `exit-signal`.
//! Authentication is public-key only, against the keys the local user holds
//! ([`keys`]); the host key is stable per target so known_hosts works.
//!
//! Modules: [`server`] (the SSH side), `input` (flow control of what the
//! client sends), [`sftp`] (the SFTP server that runs on the target),
//! [`keys`], [`ssh_config`] (the `~/.ssh/config` entries).

mod input;
pub mod keys;
pub mod server;
pub mod sftp;
pub mod ssh_config;

pub use server::{BridgeConfig, BridgeError, serve};
