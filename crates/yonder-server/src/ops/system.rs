//! System information: the `System` service.

use std::ffi::CStr;
use std::os::unix::ffi::OsStrExt;
use tonic::{Request, Response, Status};
use yonder_proto::pb::{self, system_server::System};
use yonder_proto::{PROTOCOL_VERSION, YONDER_VERSION};

#[derive(Debug, Default, Clone)]
pub struct SystemService;

fn cstr(field: &[libc::c_char]) -> String {
    // SAFETY: uname fills each field with a NUL-terminated string.
    unsafe { CStr::from_ptr(field.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// User name, home and login shell from the password database.
fn passwd(uid: u32) -> Option<(String, Vec<u8>, Vec<u8>)> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: zeroed passwd is a valid out-parameter; getpwuid_r writes into
    // it and into `buf`, whose length we pass.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success the pointers point into `buf`, NUL-terminated.
    let s = |p: *const libc::c_char| {
        if p.is_null() {
            Vec::new()
        } else {
            unsafe { CStr::from_ptr(p) }.to_bytes().to_vec()
        }
    };
    Some((
        String::from_utf8_lossy(&s(pw.pw_name)).into_owned(),
        s(pw.pw_dir),
        s(pw.pw_shell),
    ))
}

pub fn info() -> pb::SystemInfo {
    // SAFETY: zeroed utsname is a valid out-parameter for uname.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::uname(&mut uts) } == 0;
    let (kernel, hostname) = if ok {
        (cstr(&uts.release), cstr(&uts.nodename))
    } else {
        Default::default()
    };
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let (user, pw_home, shell) = passwd(uid).unwrap_or_default();
    // $HOME wins over the password database, as it does for the shell.
    let home = std::env::var_os("HOME")
        .map(|h| h.as_bytes().to_vec())
        .filter(|h| !h.is_empty())
        .unwrap_or(pw_home);
    let user = if user.is_empty() {
        std::env::var("USER").unwrap_or_default()
    } else {
        user
    };
    pb::SystemInfo {
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        kernel,
        hostname,
        user,
        uid,
        gid,
        home: home.into(),
        shell: shell.into(),
        yonder_version: YONDER_VERSION.into(),
        protocol_version: PROTOCOL_VERSION,
        daemon_pid: std::process::id(),
    }
}

#[tonic::async_trait]
impl System for SystemService {
    async fn info(
        &self,
        _req: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::SystemInfo>, Status> {
        Ok(Response::new(info()))
    }
}
