//! `${...}` variables in devcontainer.json, substituted exactly as the
//! reference CLI does (`src/spec-common/variableSubstitution.ts`): a
//! non-greedy `${…}`, the inside split on `:`, the second argument is the
//! default (further `:` parts are dropped), a missing variable with no default
//! is empty, unknown variables stay verbatim, and every string value is
//! substituted recursively (object keys are not).
//!
//! It happens in three phases because the values appear at different times:
//! 1. reading the config: `localEnv`, `localWorkspaceFolder`,
//!    `containerWorkspaceFolder` (and their `Basename` forms);
//! 2. before the container exists: `devcontainerId`;
//! 3. once it exists: `containerEnv` (from the container's `Config.Env`).

use serde_json::Value;
use sha2::Digest;
use std::collections::BTreeMap;

/// What a resolver says about one `${name:args}`.
pub enum Resolved {
    Value(String),
    /// Not this phase's variable: leave it verbatim.
    Keep,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "'${{{name}}}' in devcontainer.json can not be resolved because no environment variable name is given"
)]
pub struct VarError {
    pub name: String,
}

/// Looks up one `${name:args…}`.
pub type Resolver<'a> = dyn Fn(&str, &[&str]) -> Result<Resolved, VarError> + 'a;

/// Substitutes every `${…}` in `s` through `resolve(name, args)`.
pub fn substitute_str(s: &str, resolve: &Resolver<'_>) -> Result<String, VarError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let inner = &rest[start + 2..start + 2 + len];
        out.push_str(&rest[..start]);
        let mut parts = inner.split(':');
        let name = parts.next().unwrap_or("");
        let args: Vec<&str> = parts.collect();
        match resolve(name, &args)? {
            Resolved::Value(v) => out.push_str(&v),
            Resolved::Keep => out.push_str(&rest[start..start + 3 + len]),
        }
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Substitutes every string inside `v` (not object keys).
pub fn substitute(v: &Value, resolve: &Resolver<'_>) -> Result<Value, VarError> {
    Ok(match v {
        Value::String(s) => Value::String(substitute_str(s, resolve)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| substitute(x, resolve))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), substitute(x, resolve)?)))
                .collect::<Result<_, VarError>>()?,
        ),
        other => other.clone(),
    })
}

/// `${localEnv:VAR[:default]}` / `${containerEnv:…}`-style lookups.
pub fn env_lookup(
    name: &str,
    args: &[&str],
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, VarError> {
    let Some(var) = args.first().filter(|v| !v.is_empty()) else {
        return Err(VarError { name: name.into() });
    };
    Ok(Resolved::Value(get(var).unwrap_or_else(|| {
        args.get(1).map(|d| d.to_string()).unwrap_or_default()
    })))
}

/// Phase-1 values.
#[derive(Debug, Clone)]
pub struct LocalVars {
    pub local_workspace_folder: String,
    pub container_workspace_folder: String,
}

fn basename(p: &str) -> String {
    p.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string()
}

/// The phase-1 resolver: host environment and workspace folders.
pub fn phase1<'a>(
    vars: &'a LocalVars,
    env: &'a dyn Fn(&str) -> Option<String>,
) -> impl Fn(&str, &[&str]) -> Result<Resolved, VarError> + 'a {
    move |name, args| match name {
        // `env` is the reference CLI's undocumented alias of localEnv.
        "localEnv" | "env" => env_lookup(name, args, env),
        "localWorkspaceFolder" => Ok(Resolved::Value(vars.local_workspace_folder.clone())),
        "localWorkspaceFolderBasename" => {
            Ok(Resolved::Value(basename(&vars.local_workspace_folder)))
        }
        "containerWorkspaceFolder" => Ok(Resolved::Value(vars.container_workspace_folder.clone())),
        "containerWorkspaceFolderBasename" => {
            Ok(Resolved::Value(basename(&vars.container_workspace_folder)))
        }
        _ => Ok(Resolved::Keep),
    }
}

/// `${devcontainerId}`: SHA-256 of the id labels as compact JSON with sorted
/// keys (what `JSON.stringify(labels, Object.keys(labels).sort())` writes),
/// as a base-32 number (digits `0-9a-v`) left-padded to 52 characters
/// (spec: docs/specs/devcontainer-id-variable.md).
pub fn devcontainer_id(labels: &BTreeMap<String, String>) -> String {
    let json = serde_json::to_string(labels).expect("string map serialises");
    let digest = sha2::Sha256::digest(json.as_bytes());
    // 256 bits in 5-bit digits from the least significant end: 52 digits.
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut out = Vec::with_capacity(52);
    for i in 0..52 {
        let bit = i * 5;
        let mut d = 0u32;
        for b in 0..5 {
            let k = bit + b;
            if k < 256 {
                let byte = digest[31 - k / 8];
                d |= u32::from((byte >> (k % 8)) & 1) << b;
            }
        }
        out.push(DIGITS[d as usize]);
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOME" => Some("/home/u".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(s: &str) -> Result<String, VarError> {
        let vars = LocalVars {
            local_workspace_folder: "/p/proj".into(),
            container_workspace_folder: "/workspaces/proj".into(),
        };
        let r = phase1(&vars, &env);
        substitute_str(s, &r)
    }

    #[test]
    fn reference_cli_quirks() {
        assert_eq!(run("${localEnv:HOME}/x").unwrap(), "/home/u/x");
        assert_eq!(run("${localEnv:NOPE}").unwrap(), "");
        assert_eq!(run("${localEnv:NOPE:dflt}").unwrap(), "dflt");
        // Further ':' parts are dropped: a default cannot contain ':'.
        assert_eq!(run("${localEnv:NOPE:default:a:b:c}").unwrap(), "default");
        assert_eq!(run("${localEnv:EMPTY:dflt}").unwrap(), "");
        assert_eq!(run("${env:HOME}").unwrap(), "/home/u");
        // Unknown variables stay verbatim, containerEnv waits for phase 3.
        assert_eq!(
            run("${foo} ${containerEnv:PATH}").unwrap(),
            "${foo} ${containerEnv:PATH}"
        );
        assert_eq!(
            run("${localWorkspaceFolderBasename}:${containerWorkspaceFolder}").unwrap(),
            "proj:/workspaces/proj"
        );
        assert_eq!(run("${unterminated").unwrap(), "${unterminated");
        assert_eq!(
            run("${localEnv}").unwrap_err().to_string(),
            "'${localEnv}' in devcontainer.json can not be resolved because no environment variable name is given"
        );
    }

    #[test]
    fn devcontainer_id_is_52_base32_digits_independent_of_label_order() {
        let mut a = BTreeMap::new();
        a.insert("devcontainer.local_folder".to_string(), "/p".to_string());
        a.insert(
            "devcontainer.config_file".to_string(),
            "/p/.devcontainer/devcontainer.json".to_string(),
        );
        let id = devcontainer_id(&a);
        assert_eq!(id.len(), 52);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
        );
        let mut b = a.clone();
        b.insert("x".into(), "y".into());
        assert_ne!(devcontainer_id(&b), id);
        // Computed with Node.js exactly as the spec's reference code does.
        assert_eq!(id, "1k1je3cm3bpt9jtat19nv9o47vk8duomf89ku8h8sk2sja9rc5ii");
    }
}
