//! The key helpers against real tools: keys made by PuTTY's `puttygen` in
//! every type and format version, encrypted and not, converted by `yonder
//! keys import-ppk`, read back by `ssh-keygen`, and used to log in to a real
//! sshd; keys made by `yonder keys generate` accepted by `ssh-keygen`.

mod common;

use common::sshd::{Sshd, TEST_USER};
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn tool(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The base64 blob of an OpenSSH public key line.
fn blob(line: &str) -> String {
    line.split_whitespace()
        .nth(1)
        .expect("key blob")
        .to_string()
}

/// Makes `dir/NAME.ppk` with puttygen; returns its public key line.
fn puttygen(dir: &Path, name: &str, kind: &str, params: &[&str], pass: Option<&Path>) -> String {
    let ppk = dir.join(format!("{name}.ppk"));
    let mut c = Command::new("puttygen");
    c.args(["-q", "-t", kind, "-O", "private", "-o"]).arg(&ppk);
    for p in params {
        c.args(["--ppk-param", p]);
    }
    if kind == "rsa" || kind == "dsa" {
        c.args(["-b", "2048"]);
    }
    match pass {
        Some(p) => {
            c.arg("--new-passphrase").arg(p);
        }
        None => {
            c.arg("--new-passphrase").arg("/dev/null");
        }
    }
    tool(&mut c);
    let mut l = Command::new("puttygen");
    l.arg(&ppk)
        .args(["-O", "public-openssh", "-o", "/dev/stdout"]);
    if let Some(p) = pass {
        l.arg("--old-passphrase").arg(p);
    }
    tool(&mut l)
}

/// The public key `ssh-keygen -y` derives from the private key at `key`,
/// opened with `pass` ("" for none); fails the test if it cannot.
fn derive_public(key: impl AsRef<Path>, pass: &str) -> String {
    tool(
        Command::new("ssh-keygen")
            .args(["-y", "-P", pass, "-f"])
            .arg(key.as_ref()),
    )
}

fn yonder() -> Command {
    Command::new(YONDER)
}

/// Every PuTTY key type, in format versions 2 and 3 (and each Argon2
/// flavour of v3), encrypted and not, converts to an OpenSSH key whose
/// public half `ssh-keygen -y` derives exactly as puttygen reports it.
#[test]
fn every_ppk_type_and_version_converts_to_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pw = d.join("pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let mut cases = 0;
    for kind in ["ed25519", "rsa", "ecdsa", "dsa"] {
        for (vname, params) in [
            ("v2", vec!["version=2"]),
            ("v3", vec!["version=3"]),
            ("v3i", vec!["version=3", "kdf=argon2i"]),
            ("v3d", vec!["version=3", "kdf=argon2d"]),
        ] {
            // The Argon2 flavours matter only for encrypted keys.
            let encs: &[bool] = if vname.starts_with("v3") && vname != "v3" {
                &[true]
            } else {
                &[false, true]
            };
            for &enc in encs {
                let name = format!("{kind}-{vname}-{}", if enc { "enc" } else { "plain" });
                let expected = puttygen(d, &name, kind, &params, enc.then_some(pw.as_path()));
                let ppk = d.join(format!("{name}.ppk"));
                let out = d.join(&name);
                // Encrypted: keep the passphrase (the default); plain: none.
                let mut c = yonder();
                c.args(["keys", "import-ppk"]).arg(&ppk);
                if enc {
                    c.arg("--passphrase-file").arg(&pw);
                }
                let (code, stdout, stderr) = run(&mut c);
                assert_eq!(code, 0, "{name}: {stderr}");
                assert!(String::from_utf8_lossy(&stdout).contains("fingerprint: SHA256:"));
                assert_eq!(mode(&out), 0o600, "{name}");
                assert_eq!(mode(&out.with_extension("pub")), 0o644, "{name}");
                let pass = if enc { "correct horse" } else { "" };
                let derived = derive_public(&out, pass);
                assert_eq!(blob(&derived), blob(&expected), "{name}");
                let written = std::fs::read_to_string(out.with_extension("pub")).unwrap();
                assert_eq!(blob(&written), blob(&expected), "{name}");
                if enc {
                    // The passphrase was kept: without it ssh-keygen fails.
                    let st = Command::new("ssh-keygen")
                        .args(["-y", "-P", "", "-f"])
                        .arg(&out)
                        .output()
                        .unwrap();
                    assert!(!st.status.success(), "{name} must stay encrypted");
                }
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 4 * (2 + 2 + 1 + 1));
}

/// PuTTY writes an Ed25519 private key as 32 raw bytes; one key in 512
/// starts with a zero byte followed by one below 0x80, which is not a valid
/// SSH `mpint` (ssh-key's reading, patched in `vendor/ssh-key`). Such a key,
/// made on purpose and converted to `.ppk` by puttygen, plain and encrypted.
#[test]
fn a_ppk_ed25519_key_starting_with_a_zero_byte_is_imported() {
    use ssh_key::{LineEnding, PrivateKey, private::Ed25519Keypair};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    seed[0] = 0;
    seed[1] &= 0x7f;
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let openssh = d.join("zero");
    std::fs::write(&openssh, key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
    std::fs::set_permissions(&openssh, std::fs::Permissions::from_mode(0o600)).unwrap();
    let expected = key.public_key().to_openssh().unwrap();
    let pw = d.join("pw");
    std::fs::write(&pw, "zero pass\n").unwrap();
    for enc in [false, true] {
        let ppk = d.join(format!("zero-{enc}.ppk"));
        let mut c = Command::new("puttygen");
        c.arg(&openssh).args(["-O", "private", "-o"]).arg(&ppk);
        c.arg("--new-passphrase").arg(if enc {
            pw.as_path()
        } else {
            Path::new("/dev/null")
        });
        tool(&mut c);
        if !enc {
            // The case at hand: the private field is those 32 bytes as they
            // are. In base64, length 32 then 0x00 is "AAAAIA", and the next
            // character is 'A' or 'B' when the second byte is below 0x80.
            let text = std::fs::read_to_string(&ppk).unwrap();
            let private = text.split("Private-Lines: 1\n").nth(1).unwrap_or_default();
            assert!(
                private.starts_with("AAAAIAA") || private.starts_with("AAAAIAB"),
                "{text}"
            );
        }
        let out = d.join(format!("out-{enc}"));
        let mut c = yonder();
        c.args(["keys", "import-ppk"])
            .arg(&ppk)
            .arg("--out")
            .arg(&out);
        if enc {
            c.arg("--passphrase-file").arg(&pw);
        }
        let (code, _, err) = run(&mut c);
        assert_eq!(code, 0, "encrypted {enc}: {err}");
        let pass = if enc { "zero pass" } else { "" };
        let derived = derive_public(&out, pass);
        assert_eq!(blob(&derived), blob(&expected), "encrypted {enc}");
    }
}

/// Re-encryption choices: `--no-passphrase` and a new passphrase.
#[test]
fn a_converted_key_can_drop_or_change_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (old, new) = (d.join("old"), d.join("new"));
    std::fs::write(&old, "old-pass\n").unwrap();
    std::fs::write(&new, "new-pass\n").unwrap();
    let expected = puttygen(d, "k", "ed25519", &["version=3"], Some(&old));
    let ppk = d.join("k.ppk");
    let (code, _, err) = run(yonder()
        .args(["keys", "import-ppk"])
        .arg(&ppk)
        .arg("--passphrase-file")
        .arg(&old)
        .arg("--no-passphrase")
        .arg("--out")
        .arg(d.join("plain")));
    assert_eq!(code, 0, "{err}");
    let got = derive_public(d.join("plain"), "");
    assert_eq!(blob(&got), blob(&expected));
    let (code, _, err) = run(yonder()
        .args(["keys", "import-ppk"])
        .arg(&ppk)
        .arg("--passphrase-file")
        .arg(&old)
        .arg("--new-passphrase-file")
        .arg(&new)
        .arg("--out")
        .arg(d.join("renewed")));
    assert_eq!(code, 0, "{err}");
    let got = derive_public(d.join("renewed"), "new-pass");
    assert_eq!(blob(&got), blob(&expected));
}

/// A wrong passphrase is named as such, nothing is written, and an existing
/// key is never overwritten.
#[test]
fn a_wrong_passphrase_or_an_existing_output_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (pw, wrong) = (d.join("pw"), d.join("wrong"));
    std::fs::write(&pw, "right\n").unwrap();
    std::fs::write(&wrong, "wrong\n").unwrap();
    puttygen(d, "k", "ecdsa", &["version=2"], Some(&pw));
    let (code, _, err) = run(yonder()
        .args(["keys", "import-ppk"])
        .arg(d.join("k.ppk"))
        .arg("--passphrase-file")
        .arg(&wrong));
    assert_eq!(code, 1);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(!d.join("k").exists() && !d.join("k.pub").exists());
    std::fs::write(d.join("k"), "precious").unwrap();
    let (code, _, err) = run(yonder()
        .args(["keys", "import-ppk"])
        .arg(d.join("k.ppk"))
        .arg("--passphrase-file")
        .arg(&pw));
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(d.join("k")).unwrap(), "precious");
    // Not a PuTTY file at all.
    let (code, _, err) = run(yonder()
        .args(["keys", "import-ppk"])
        .arg(&pw)
        .arg("--out")
        .arg(d.join("x")));
    assert_eq!(code, 1);
    assert!(err.contains("not a PuTTY key file"), "{err}");
}

/// `yonder keys generate`: ssh-keygen accepts the keys, modes are right,
/// the passphrase protects, and nothing is ever overwritten.
#[test]
fn generated_keys_are_openssh_keys_with_private_modes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    // Default location: ~/.ssh/id_ed25519, ~/.ssh created 0700.
    let (code, out, err) =
        run(yonder()
            .env("HOME", home)
            .args(["keys", "generate", "--comment", "me@test"]));
    assert_eq!(code, 0, "{err}");
    let key = home.join(".ssh/id_ed25519");
    assert_eq!(mode(&home.join(".ssh")), 0o700);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&home.join(".ssh/id_ed25519.pub")), 0o644);
    let listed = tool(Command::new("ssh-keygen").arg("-l").arg("-f").arg(&key));
    assert!(
        listed.contains("me@test") && listed.contains("(ED25519)"),
        "{listed}"
    );
    let fp = listed.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        String::from_utf8_lossy(&out).contains(&fp),
        "the printed fingerprint is ssh-keygen's"
    );
    // Never overwrite.
    let before = std::fs::read(&key).unwrap();
    let (code, _, err) = run(yonder().env("HOME", home).args(["keys", "generate"]));
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before);
    // RSA with a passphrase.
    let pw = home.join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let rsa = home.join("rsa_key");
    let (code, _, err) = run(yonder()
        .args([
            "keys", "generate", "--type", "rsa", "--bits", "2048", "--file",
        ])
        .arg(&rsa)
        .arg("--passphrase-file")
        .arg(&pw));
    assert_eq!(code, 0, "{err}");
    let listed = tool(Command::new("ssh-keygen").arg("-l").arg("-f").arg(&rsa));
    assert!(
        listed.starts_with("2048 ") && listed.contains("(RSA)"),
        "{listed}"
    );
    derive_public(&rsa, "s3cret");
    let wrong = Command::new("ssh-keygen")
        .args(["-y", "-P", "", "-f"])
        .arg(&rsa)
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "the key is passphrase-protected");
    // Bad sizes are refused before anything is written.
    let (code, _, err) = run(yonder()
        .args([
            "keys", "generate", "--type", "rsa", "--bits", "1024", "--file",
        ])
        .arg(home.join("small")));
    assert_eq!(code, 1);
    assert!(err.contains("2048"), "{err}");
    assert!(!home.join("small").exists());
}

/// A converted PuTTY key logs in to a real sshd, for each type OpenSSH
/// still accepts (DSA is disabled by default since OpenSSH 7.0).
#[test]
fn converted_ppk_keys_log_in_to_sshd() {
    let s = Sshd::start();
    let mut authorized = std::fs::read_to_string(s.dir.join("authorized_keys")).unwrap();
    let mut names = Vec::new();
    for (kind, v) in [
        ("ed25519", "version=3"),
        ("rsa", "version=2"),
        ("ecdsa", "version=3"),
    ] {
        let name = format!("ppk-{kind}");
        let line = puttygen(&s.dir, &name, kind, &[v], None);
        let (code, _, err) = run(yonder()
            .args(["keys", "import-ppk"])
            .arg(s.dir.join(format!("{name}.ppk"))));
        assert_eq!(code, 0, "{err}");
        authorized.push_str(&line);
        names.push(name);
    }
    // One more, added to the config by `--add-to-host`.
    let line = puttygen(&s.dir, "ppk-added", "ed25519", &["version=3"], None);
    authorized.push_str(&line);
    let cfg_add = s.write_config(
        "config-add",
        "yt",
        "no-such-key",
        "known_hosts",
        "  BatchMode yes\n",
    );
    let (code, out, err) = run(yonder()
        .env("YONDER_SSH_CONFIG", &cfg_add)
        .args(["keys", "import-ppk", "--add-to-host", "yt"])
        .arg(s.dir.join("ppk-added.ppk")));
    assert_eq!(code, 0, "{err}");
    assert!(String::from_utf8_lossy(&out).contains("backup of the previous version"));
    let text = std::fs::read_to_string(&cfg_add).unwrap();
    assert!(
        text.contains(&format!(
            "Host yt\n  IdentityFile {}\n",
            s.dir.join("ppk-added").display()
        )),
        "{text}"
    );
    std::fs::write(s.dir.join("authorized_keys"), authorized).unwrap();
    let out = Command::new("ssh")
        .arg("-F")
        .arg(&cfg_add)
        .args(["yt", "true"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the added IdentityFile logs in: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in names {
        let cfg = s.write_config(
            &format!("config-{name}"),
            "yt",
            &name,
            "known_hosts",
            "  BatchMode yes\n",
        );
        let out = Command::new("ssh")
            .arg("-F")
            .arg(&cfg)
            .args(["yt", "id -un"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(TEST_USER),
            "{name}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.log()
        );
    }
}

fn tmux(sock: &str, args: &[&str]) -> String {
    tool(Command::new("tmux").arg("-S").arg(sock).args(args))
}

fn pane_shows(sock: &str, needle: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let text = tmux(sock, &["capture-pane", "-p", "-t", "p"]);
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "never showed {needle:?}:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `yonder keys copy` over a password login (the prompt reaches the user's
/// terminal through askpass): the key is added with the right modes, a
/// second run adds nothing (and logs in with the key), and key login works.
#[test]
fn keys_copy_adds_the_key_once_and_key_login_then_works() {
    let s = Sshd::start_with(&[
        "-o",
        "AuthorizedKeysFile=.ssh/authorized_keys",
        "-o",
        "PasswordAuthentication=yes",
    ]);
    let u = common::user::TempUser::create();
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).unwrap();
    let password = format!("pw-{}", hex::encode(rnd));
    u.set_password(&password);
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = run(yonder().env("HOME", home.path()).args([
        "keys",
        "generate",
        "--comment",
        r"copy\n*test",
    ]));
    assert_eq!(code, 0, "{err}");
    let cfg = home.path().join(".ssh/config");
    std::fs::write(
        &cfg,
        format!(
            "Host yd\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  UserKnownHostsFile {}\n  IdentitiesOnly yes\n  PreferredAuthentications publickey,password\n",
            s.port,
            u.name,
            s.dir.join("known_hosts").display()
        ),
    )
    .unwrap();
    let sock = s.dir.join("tmux-copy.sock").display().to_string();
    let cmd = format!(
        "env HOME={} YONDER_SSH_CONFIG={} {YONDER} keys copy yd; echo exit=$?; sleep 60",
        home.path().display(),
        cfg.display()
    );
    tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "p",
            "-x",
            "200",
            "-y",
            "40",
            &cmd,
        ],
    );
    pane_shows(&sock, "password:");
    tmux(&sock, &["send-keys", "-t", "p", &password, "Enter"]);
    let screen = pane_shows(&sock, "exit=");
    let _ = Command::new("tmux")
        .arg("-S")
        .arg(&sock)
        .arg("kill-server")
        .status();
    assert!(screen.contains("exit=0"), "{screen}\n{}", s.log());
    assert!(
        screen.contains("added SHA256:") && screen.contains("key login works"),
        "{screen}"
    );
    assert!(!screen.contains(&password), "the password is not echoed");
    let ak = u.home.join(".ssh/authorized_keys");
    assert_eq!(mode(&u.home.join(".ssh")), 0o700);
    assert_eq!(mode(&ak), 0o600);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&ak).unwrap().uid(),
        u.uid,
        "made by the user, not root"
    );
    // Second run: no terminal, so any prompt would fail it; the key logs in.
    let (code, out, err) = run(yonder()
        .env("HOME", home.path())
        .env("YONDER_SSH_CONFIG", &cfg)
        .args(["keys", "copy", "yd"]));
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.contains("already in") && out.contains("key login works"),
        "{out}"
    );
    let public = std::fs::read_to_string(home.path().join(".ssh/id_ed25519.pub")).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&ak)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    // The whole line, comment included (a backslash and a `*` survive).
    assert_eq!(lines[0], public.trim_end());
    // And plain ssh with the key, no password possible.
    let o = Command::new("ssh")
        .arg("-F")
        .arg(&cfg)
        .args(["-o", "BatchMode=yes", "-i"])
        .arg(home.path().join(".ssh/id_ed25519"))
        .args(["yd", "id -un"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), u.name);
}

/// Passphrases typed at the terminal: the PuTTY key's (import-ppk) and a
/// new key's, asked twice (generate --passphrase-prompt); never echoed.
#[test]
fn passphrases_are_asked_on_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pw = d.join("pw");
    std::fs::write(&pw, "typed secret\n").unwrap();
    let expected = puttygen(d, "t", "ed25519", &["version=3"], Some(&pw));
    let sock = d.join("tmux.sock").display().to_string();
    let cmd = format!(
        "{YONDER} keys import-ppk {}; echo import=$?; {YONDER} keys generate --passphrase-prompt --file {}; echo generate=$?; sleep 60",
        d.join("t.ppk").display(),
        d.join("new").display()
    );
    tmux(
        &sock,
        &[
            "new-session",
            "-d",
            "-s",
            "p",
            "-x",
            "200",
            "-y",
            "50",
            &cmd,
        ],
    );
    pane_shows(&sock, "Passphrase for");
    tmux(&sock, &["send-keys", "-t", "p", "typed secret", "Enter"]);
    pane_shows(&sock, "import=0");
    pane_shows(&sock, "New passphrase");
    tmux(&sock, &["send-keys", "-t", "p", "second secret", "Enter"]);
    pane_shows(&sock, "Same passphrase again");
    tmux(&sock, &["send-keys", "-t", "p", "second secret", "Enter"]);
    let screen = pane_shows(&sock, "generate=");
    let _ = Command::new("tmux")
        .arg("-S")
        .arg(&sock)
        .arg("kill-server")
        .status();
    assert!(screen.contains("generate=0"), "{screen}");
    assert!(
        !screen.contains("secret"),
        "nothing typed is echoed:\n{screen}"
    );
    let got = derive_public(d.join("t"), "typed secret");
    assert_eq!(blob(&got), blob(&expected));
    derive_public(d.join("new"), "second secret");
}
