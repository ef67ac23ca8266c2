//! Image metadata (`devcontainer.metadata` label) and the spec's merge rules.
//!
//! The label holds a JSON array of snippets: the base image's, each
//! feature's, then devcontainer.json's. Merging follows the table in the
//! spec's devcontainer-reference.md: booleans OR, lists union, maps per key
//! (last wins), lifecycle commands collected in order, scalars last wins,
//! `hostRequirements` max. "When the order matters, the devcontainer.json is
//! considered last."

use serde_json::{Map, Value};

/// Properties that may appear in image metadata.
pub const METADATA_KEYS: &[&str] = &[
    "id",
    "entrypoint",
    "forwardPorts",
    "portsAttributes",
    "otherPortsAttributes",
    "containerEnv",
    "remoteEnv",
    "remoteUser",
    "containerUser",
    "updateRemoteUserUID",
    "userEnvProbe",
    "overrideCommand",
    "shutdownAction",
    "init",
    "privileged",
    "capAdd",
    "securityOpt",
    "mounts",
    "customizations",
    "hostRequirements",
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
    "waitFor",
];

/// The metadata snippet of a devcontainer.json (its metadata properties).
pub fn snippet(config: &Value) -> Value {
    let mut m = Map::new();
    if let Some(o) = config.as_object() {
        for k in METADATA_KEYS {
            if let Some(v) = o.get(*k) {
                m.insert((*k).into(), v.clone());
            }
        }
    }
    Value::Object(m)
}

/// Reads a `devcontainer.metadata` label: an array, or one object.
pub fn parse_label(label: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str::<Value>(label) {
        Ok(Value::Array(a)) => Ok(a.into_iter().filter(Value::is_object).collect()),
        Ok(v @ Value::Object(_)) => Ok(vec![v]),
        Ok(_) => Err("devcontainer.metadata is neither an array nor an object".into()),
        Err(e) => Err(format!("devcontainer.metadata is not JSON: {e}")),
    }
}

/// A lifecycle command and where it came from (for error messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub command: Value,
    /// "devcontainer.json", or the feature/image id.
    pub origin: String,
}

/// The merged configuration that drives the container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    pub init: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub security_opt: Vec<String>,
    pub forward_ports: Vec<Value>,
    pub mounts: Vec<Value>,
    pub container_env: Map<String, Value>,
    pub remote_env: Map<String, Value>,
    pub ports_attributes: Map<String, Value>,
    pub remote_user: Option<String>,
    pub container_user: Option<String>,
    pub update_remote_user_uid: Option<bool>,
    pub user_env_probe: Option<String>,
    pub override_command: Option<bool>,
    pub shutdown_action: Option<String>,
    pub wait_for: Option<String>,
    pub entrypoints: Vec<String>,
    /// Lifecycle hook name → the commands from each snippet, in order.
    pub hooks: Vec<(String, Vec<Origin>)>,
    pub host_requirements: Map<String, Value>,
}

fn push_unique(list: &mut Vec<Value>, v: &Value) {
    if !list.contains(v) {
        list.push(v.clone());
    }
}

fn mount_target(m: &Value) -> Option<String> {
    match m {
        Value::Object(o) => o.get("target").and_then(Value::as_str).map(String::from),
        Value::String(s) => s.split(',').find_map(|part| {
            let (k, v) = part.split_once('=')?;
            matches!(k.trim(), "target" | "dst" | "destination").then(|| v.trim().to_string())
        }),
        _ => None,
    }
}

/// Parses "4gb"-style sizes into bytes, for the max rule.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mul) = [
        ("tb", 1u64 << 40),
        ("gb", 1 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
    ]
    .iter()
    .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n.to_string(), *m)))
    .unwrap_or((s.clone(), 1));
    num.trim()
        .parse::<f64>()
        .ok()
        .map(|n| (n * mul as f64) as u64)
}

/// Merges snippets (image and features first, devcontainer.json last).
pub fn merge(snippets: &[Value]) -> Merged {
    let mut m = Merged::default();
    // initializeCommand runs on the host and only from devcontainer.json.
    for hook in crate::config::LIFECYCLE.iter().skip(1) {
        m.hooks.push((hook.to_string(), Vec::new()));
    }
    for (i, s) in snippets.iter().enumerate() {
        let Some(o) = s.as_object() else { continue };
        let origin = o
            .get("id")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| {
                if i + 1 == snippets.len() {
                    "devcontainer.json".into()
                } else {
                    format!("image metadata #{}", i + 1)
                }
            });
        let b = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
        m.init |= b("init");
        m.privileged |= b("privileged");
        for (key, list) in [
            ("capAdd", &mut m.cap_add),
            ("securityOpt", &mut m.security_opt),
        ] {
            for v in o.get(key).and_then(Value::as_array).into_iter().flatten() {
                if let Some(s) = v.as_str()
                    && !list.iter().any(|x| x == s)
                {
                    list.push(s.into());
                }
            }
        }
        for v in o
            .get("forwardPorts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            push_unique(&mut m.forward_ports, v);
        }
        for v in o
            .get("mounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            // Last wins per target.
            if let Some(t) = mount_target(v) {
                m.mounts.retain(|x| mount_target(x).as_deref() != Some(&t));
            }
            m.mounts.push(v.clone());
        }
        for (key, map) in [
            ("containerEnv", &mut m.container_env),
            ("remoteEnv", &mut m.remote_env),
            ("portsAttributes", &mut m.ports_attributes),
        ] {
            if let Some(src) = o.get(key).and_then(Value::as_object) {
                for (k, v) in src {
                    map.insert(k.clone(), v.clone());
                }
            }
        }
        let s = |k: &str| o.get(k).and_then(Value::as_str).map(String::from);
        m.remote_user = s("remoteUser").or(m.remote_user.take());
        m.container_user = s("containerUser").or(m.container_user.take());
        m.user_env_probe = s("userEnvProbe").or(m.user_env_probe.take());
        m.shutdown_action = s("shutdownAction").or(m.shutdown_action.take());
        m.wait_for = s("waitFor").or(m.wait_for.take());
        if let Some(e) = s("entrypoint") {
            m.entrypoints.push(e);
        }
        if let Some(v) = o.get("updateRemoteUserUID").and_then(Value::as_bool) {
            m.update_remote_user_uid = Some(v);
        }
        if let Some(v) = o.get("overrideCommand").and_then(Value::as_bool) {
            m.override_command = Some(v);
        }
        for (name, list) in &mut m.hooks {
            if let Some(c) = o.get(name.as_str())
                && !crate::lifecycle::is_empty_command(c)
            {
                list.push(Origin {
                    command: c.clone(),
                    origin: origin.clone(),
                });
            }
        }
        if let Some(h) = o.get("hostRequirements").and_then(Value::as_object) {
            for (k, v) in h {
                let bigger = match (m.host_requirements.get(k), k.as_str()) {
                    (None, _) => true,
                    (Some(old), "cpus") => v.as_u64() > old.as_u64(),
                    (Some(old), "memory" | "storage") => {
                        parse_size(v.as_str().unwrap_or(""))
                            > parse_size(old.as_str().unwrap_or(""))
                    }
                    (Some(_), _) => true,
                };
                if bigger {
                    m.host_requirements.insert(k.clone(), v.clone());
                }
            }
        }
    }
    m
}

impl Merged {
    pub fn hook(&self, name: &str) -> &[Origin] {
        self.hooks
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l.as_slice())
            .unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_rules_follow_the_spec_table() {
        let image = json!({"id": "base", "init": true, "capAdd": ["SYS_PTRACE"],
            "remoteUser": "vscode", "containerEnv": {"A": "1", "B": "1"},
            "mounts": [{"type": "volume", "source": "v1", "target": "/data"}],
            "postCreateCommand": "echo image", "hostRequirements": {"memory": "4gb", "cpus": 2}});
        let conf = json!({"capAdd": ["SYS_PTRACE", "NET_ADMIN"], "containerEnv": {"B": "2"},
            "mounts": ["type=volume,source=v2,target=/data"], "remoteUser": "me",
            "postCreateCommand": ["echo", "conf"], "hostRequirements": {"memory": "2gb", "cpus": 4}});
        let m = merge(&[image, conf]);
        assert!(m.init && !m.privileged);
        assert_eq!(m.cap_add, ["SYS_PTRACE", "NET_ADMIN"]);
        assert_eq!(m.container_env["A"], "1");
        assert_eq!(m.container_env["B"], "2");
        assert_eq!(m.mounts, [json!("type=volume,source=v2,target=/data")]);
        assert_eq!(m.remote_user.as_deref(), Some("me"));
        let pc = m.hook("postCreateCommand");
        assert_eq!(pc.len(), 2);
        assert_eq!(pc[0].origin, "base");
        assert_eq!(pc[1].origin, "devcontainer.json");
        assert_eq!(m.host_requirements["memory"], "4gb");
        assert_eq!(m.host_requirements["cpus"], 4);
    }

    #[test]
    fn labels_may_be_an_array_or_one_object() {
        assert_eq!(parse_label(r#"{"a":1}"#).unwrap().len(), 1);
        assert_eq!(parse_label(r#"[{"a":1},{"b":2}]"#).unwrap().len(), 2);
        assert!(parse_label("nope").is_err());
    }
}
