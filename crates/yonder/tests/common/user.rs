//! Throwaway system users for tests that change a user's home, `~/.ssh`
//! modes or password: each test gets its own, so nothing it breaks on
//! purpose can touch another test (or the shared `yondertest` user), and
//! the real root `~/.ssh` is never involved.

use super::*;

pub struct TempUser {
    pub name: String,
    pub home: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

fn out(cmd: &mut Command) -> String {
    let o = cmd.output().expect("run");
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

impl TempUser {
    /// A new user with a home under /home, no password ('*': not locked,
    /// so sshd without PAM accepts its keys) and /bin/sh as shell.
    pub fn create() -> Self {
        assert!(
            is_root(),
            "creating a test user needs root (CI runs as root)"
        );
        let mut rnd = [0u8; 4];
        getrandom::fill(&mut rnd).unwrap();
        let name = format!("yd{}", hex::encode(rnd));
        // useradd waits for the passwd lock itself when tests run at once.
        out(Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", "--password", "*"])
            .arg(&name));
        let uid = out(Command::new("id").args(["-u", &name])).parse().unwrap();
        let gid = out(Command::new("id").args(["-g", &name])).parse().unwrap();
        let home = PathBuf::from(format!("/home/{name}"));
        Self {
            name,
            home,
            uid,
            gid,
        }
    }

    pub fn set_password(&self, password: &str) {
        use std::io::Write;
        let mut c = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{}:{password}\n", self.name).as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success());
    }

    /// `program` run as this user (setpriv), with HOME and USER set and a
    /// clean environment otherwise.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--init-groups", "--"])
            .arg(program)
            .env_clear()
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
        c
    }

    /// Writes a file in the home (as root, then gives it to the user).
    pub fn write(&self, rel: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.home.join(rel);
        std::fs::write(&p, text).unwrap();
        std::os::unix::fs::chown(&p, Some(self.uid), Some(self.gid)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-u", &self.name]).status();
        let _ = Command::new("userdel")
            .args(["--remove", "--force", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}
