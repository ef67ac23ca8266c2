//! The yonder server: everything that runs on the target.
//!
//! - [`ops`]: the operations (files, processes, system info) as gRPC services;
//! - [`daemon`]: the per-user daemon that owns all state and listens on a unix
//!   socket in a private directory (and, on request, on loopback TCP with a
//!   token), exiting when idle;
//! - [`proxy`]: `yonder server proxy`, which relays its stdio to the daemon,
//!   starting it first when none runs (this is what SSH and containers run);
//! - [`session`]: the environment of the session that carried a connection;
//! - [`rundir`]: where the daemon's socket, lock and log live, and how a daemon
//!   is started race-free.

pub mod bulk;
pub mod daemon;
pub mod ops;
pub mod proxy;
pub mod rundir;
pub mod session;
pub mod stdio;
