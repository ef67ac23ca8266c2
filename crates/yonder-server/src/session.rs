//! The environment of the session that carried a connection.
//!
//! The daemon outlives the ssh session (or `podman exec`) that started it,
//! and its own environment is that first session's: a later login's
//! `SSH_AUTH_SOCK`, `SSH_CONNECTION` or freshly exported variables would be
//! missing from everything it runs. So each `yonder server proxy` sends its
//! environment with the stdio it hands over ([`yonder_proto::fdpass`]), the
//! daemon attaches it to every request of that connection, and programs and
//! terminals started on it get that environment (then the request's own
//! variables on top), as each sshd session gives its programs its own.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use yonder_proto::pb;

/// A connection's session environment (a request extension).
#[derive(Debug, Clone)]
pub struct SessionEnv(Arc<pb::SessionEnv>);

impl SessionEnv {
    pub fn new(env: pb::SessionEnv) -> Self {
        Self(Arc::new(env))
    }

    /// This process's environment, as a proxy sends it.
    pub fn current() -> pb::SessionEnv {
        pb::SessionEnv {
            env: std::env::vars_os()
                .map(|(k, v)| pb::EnvVar {
                    name: k.as_bytes().to_vec().into(),
                    value: v.as_bytes().to_vec().into(),
                })
                .collect(),
        }
    }

    /// The session environment attached to `req`, if its connection has one.
    pub fn of<T>(req: &tonic::Request<T>) -> Option<Self> {
        req.extensions().get::<Self>().cloned()
    }

    /// The value of `name` in this environment (the last one, as a shell
    /// would keep it), if any.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .env
            .iter()
            .rev()
            .find(|v| v.name.as_ref() == name.as_bytes())
            .map(|v| v.value.as_ref())
    }

    /// Replaces `cmd`'s inherited environment with the session's. Names that
    /// could not have come from an environment (empty, with `=` or NUL) are
    /// skipped.
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        cmd.env_clear();
        for v in &self.0.env {
            if !v.name.is_empty()
                && !v.name.contains(&b'=')
                && !v.name.contains(&0)
                && !v.value.contains(&0)
            {
                cmd.env(OsStr::from_bytes(&v.name), OsStr::from_bytes(&v.value));
            }
        }
    }
}
