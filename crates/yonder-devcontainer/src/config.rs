//! Finding, reading and checking devcontainer.json.
//!
//! Every property of the spec's reference is known with its type: a wrong
//! type is an error that names file, line and column; an unknown property is
//! a warning with the closest known name (a typo like `postCreateComand`
//! would otherwise be silently ignored, as the reference CLI does).

use crate::jsonc::{self, Document, Pos};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "Dev container config ({0}) not found. Looked for .devcontainer/devcontainer.json, .devcontainer.json and .devcontainer/<folder>/devcontainer.json; create one or pass --config"
    )]
    NotFound(PathBuf),
    #[error("several dev container configs in {folder}: {}; choose one with --config", .found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        folder: PathBuf,
        found: Vec<PathBuf>,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{pos}: expected {expected}, found {found}")]
    Invalid {
        path: PathBuf,
        pos: Pos,
        expected: String,
        found: String,
    },
    #[error("{path}: {message}")]
    Other { path: PathBuf, message: String },
}

/// A warning about a config that still works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: PathBuf,
    pub pos: Pos,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.pos, self.message)
    }
}

/// The config file of `workspace`, in the spec's order of precedence.
pub fn locate(workspace: &Path, explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            workspace.join(p)
        };
        if !p.is_file() {
            return Err(ConfigError::NotFound(p));
        }
        return Ok(p);
    }
    let first = workspace.join(".devcontainer/devcontainer.json");
    if first.is_file() {
        return Ok(first);
    }
    let second = workspace.join(".devcontainer.json");
    if second.is_file() {
        return Ok(second);
    }
    // One level of sub-folders, which the reference CLI does not search
    // (cli#457); several matches are listed rather than guessed.
    let mut found = Vec::new();
    if let Ok(rd) = std::fs::read_dir(workspace.join(".devcontainer")) {
        for e in rd.flatten() {
            let p = e.path().join("devcontainer.json");
            if p.is_file() {
                found.push(p);
            }
        }
    }
    found.sort();
    match found.len() {
        0 => Err(ConfigError::NotFound(first)),
        1 => Ok(found.remove(0)),
        _ => Err(ConfigError::Ambiguous {
            folder: workspace.to_path_buf(),
            found,
        }),
    }
}

/// The JSON types a property may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Bool,
    Object,
    StrArray,
    /// string or string[]
    StrOrArray,
    /// string, string[] or {name: string | string[]}
    Command,
    /// int | string | (int|string)[]
    Ports,
    /// (int|string)[]
    PortList,
    /// (string | object)[]
    Mounts,
    /// object of string (or null, for remoteEnv)
    EnvMap,
    Any,
    Build,
    HostReq,
}

impl Ty {
    fn describe(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Bool => "true or false",
            Ty::Object | Ty::Build | Ty::HostReq => "an object",
            Ty::StrArray => "an array of strings",
            Ty::StrOrArray => "a string or an array of strings",
            Ty::Command => {
                "a command: a string, an array of strings, or an object of named commands"
            }
            Ty::Ports => "a port number, a string, or an array of them",
            Ty::PortList => "an array of port numbers or \"host:port\" strings",
            Ty::Mounts => "an array of mount strings or {type, source, target} objects",
            Ty::EnvMap => "an object of strings",
            Ty::Any => "any value",
        }
    }
}

pub const LIFECYCLE: [&str; 6] = [
    "initializeCommand",
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
];

/// Every property in the spec's devcontainer.json reference, plus the legacy
/// ones the reference CLI still accepts.
const PROPERTIES: &[(&str, Ty)] = &[
    ("$schema", Ty::Str),
    ("name", Ty::Str),
    ("forwardPorts", Ty::PortList),
    ("portsAttributes", Ty::Object),
    ("otherPortsAttributes", Ty::Object),
    ("containerEnv", Ty::EnvMap),
    ("remoteEnv", Ty::EnvMap),
    ("remoteUser", Ty::Str),
    ("containerUser", Ty::Str),
    ("updateRemoteUserUID", Ty::Bool),
    ("userEnvProbe", Ty::Str),
    ("overrideCommand", Ty::Bool),
    ("shutdownAction", Ty::Str),
    ("init", Ty::Bool),
    ("privileged", Ty::Bool),
    ("capAdd", Ty::StrArray),
    ("securityOpt", Ty::StrArray),
    ("mounts", Ty::Mounts),
    ("features", Ty::Object),
    ("overrideFeatureInstallOrder", Ty::StrArray),
    ("secrets", Ty::Object),
    ("customizations", Ty::Object),
    ("hostRequirements", Ty::HostReq),
    ("image", Ty::Str),
    ("build", Ty::Build),
    ("appPort", Ty::Ports),
    ("workspaceMount", Ty::Str),
    ("workspaceFolder", Ty::Str),
    ("runArgs", Ty::StrArray),
    ("dockerComposeFile", Ty::StrOrArray),
    ("service", Ty::Str),
    ("runServices", Ty::StrArray),
    ("initializeCommand", Ty::Command),
    ("onCreateCommand", Ty::Command),
    ("updateContentCommand", Ty::Command),
    ("postCreateCommand", Ty::Command),
    ("postStartCommand", Ty::Command),
    ("postAttachCommand", Ty::Command),
    ("waitFor", Ty::Str),
    // Legacy, moved by the reference CLI's updateFromOldProperties.
    ("dockerFile", Ty::Str),
    ("context", Ty::Str),
    ("extensions", Ty::StrArray),
    ("settings", Ty::Object),
    ("devPort", Ty::Any),
];

const BUILD: &[(&str, Ty)] = &[
    ("dockerfile", Ty::Str),
    ("dockerFile", Ty::Str),
    ("context", Ty::Str),
    ("args", Ty::EnvMap),
    ("options", Ty::StrArray),
    ("target", Ty::Str),
    ("cacheFrom", Ty::StrOrArray),
];

const HOST_REQ: &[(&str, Ty)] = &[
    ("cpus", Ty::Any),
    ("memory", Ty::Str),
    ("storage", Ty::Str),
    ("gpu", Ty::Any),
];

const ENUMS: &[(&str, &[&str])] = &[
    (
        "userEnvProbe",
        &[
            "none",
            "interactiveShell",
            "loginShell",
            "loginInteractiveShell",
        ],
    ),
    ("shutdownAction", &["none", "stopContainer", "stopCompose"]),
    (
        "waitFor",
        &[
            "initializeCommand",
            "onCreateCommand",
            "updateContentCommand",
            "postCreateCommand",
            "postStartCommand",
        ],
    ),
];

fn type_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn is_str_array(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
}

fn is_port(v: &Value) -> bool {
    v.as_u64().is_some_and(|p| p <= 65535) || v.is_string()
}

fn matches(ty: Ty, v: &Value) -> bool {
    match ty {
        Ty::Str => v.is_string(),
        Ty::Bool => v.is_boolean(),
        Ty::Object | Ty::Build | Ty::HostReq => v.is_object(),
        Ty::StrArray => is_str_array(v),
        Ty::StrOrArray => v.is_string() || is_str_array(v),
        Ty::Command => {
            v.is_string()
                || is_str_array(v)
                || v.as_object()
                    .is_some_and(|m| m.values().all(|x| x.is_string() || is_str_array(x)))
        }
        Ty::Ports => is_port(v) || v.as_array().is_some_and(|a| a.iter().all(is_port)),
        Ty::PortList => v.as_array().is_some_and(|a| a.iter().all(is_port)),
        Ty::Mounts => v
            .as_array()
            .is_some_and(|a| a.iter().all(|m| m.is_string() || m.is_object())),
        Ty::EnvMap => v
            .as_object()
            .is_some_and(|m| m.values().all(|x| x.is_string() || x.is_null())),
        Ty::Any => true,
    }
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn closest<'a>(name: &str, known: &[(&'a str, Ty)]) -> Option<&'a str> {
    known
        .iter()
        .map(|(k, _)| (*k, distance(name, k)))
        .filter(|(k, d)| *d <= 3.max(k.len() / 4))
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

/// Checks `obj` against `known`; errors for wrong types, warnings for
/// unknown names.
fn check_object(
    path: &Path,
    doc: &Document,
    pointer: &str,
    obj: &serde_json::Map<String, Value>,
    known: &[(&str, Ty)],
    warnings: &mut Vec<Warning>,
) -> Result<(), ConfigError> {
    for (k, v) in obj {
        let child = format!("{pointer}/{}", jsonc::pointer_token(k));
        let Some((_, ty)) = known.iter().find(|(n, _)| n == k) else {
            let hint = closest(k, known)
                .map(|c| format!(" (did you mean \"{c}\"?)"))
                .unwrap_or_default();
            warnings.push(Warning {
                path: path.into(),
                pos: doc.pos(&format!("{child}#key")),
                message: format!("unknown property \"{k}\" is ignored{hint}"),
            });
            continue;
        };
        if !matches(*ty, v) {
            return Err(ConfigError::Invalid {
                path: path.into(),
                pos: doc.pos(&child),
                expected: format!("\"{k}\" to be {}", ty.describe()),
                found: type_name(v),
            });
        }
        if let Some((_, allowed)) = ENUMS.iter().find(|(n, _)| n == k) {
            let s = v.as_str().unwrap_or_default();
            if !allowed.contains(&s) {
                return Err(ConfigError::Invalid {
                    path: path.into(),
                    pos: doc.pos(&child),
                    expected: format!("\"{k}\" to be one of {}", allowed.join(", ")),
                    found: type_name(v),
                });
            }
        }
        let nested = match ty {
            Ty::Build => Some(BUILD),
            Ty::HostReq => Some(HOST_REQ),
            _ => None,
        };
        if let (Some(known), Some(m)) = (nested, v.as_object()) {
            check_object(path, doc, &child, m, known, warnings)?;
        }
    }
    Ok(())
}

/// A read, checked config file (variables not yet substituted).
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// The file's bytes, for change detection.
    pub text: String,
    pub value: Value,
    pub warnings: Vec<Warning>,
}

/// Reads and checks one devcontainer.json.
pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    parse(path, text)
}

pub fn parse(path: &Path, text: String) -> Result<ConfigFile, ConfigError> {
    let doc = jsonc::parse(&text).map_err(|e| ConfigError::Invalid {
        path: path.into(),
        pos: e.pos,
        expected: e.expected,
        found: e.found,
    })?;
    let Some(obj) = doc.value.as_object() else {
        return Err(ConfigError::Invalid {
            path: path.into(),
            pos: doc.pos(""),
            expected: "a JSON object ({ ... }) at the top level".into(),
            found: type_name(&doc.value),
        });
    };
    let mut warnings = Vec::new();
    check_object(path, &doc, "", obj, PROPERTIES, &mut warnings)?;
    let mut value = doc.value.clone();
    migrate_legacy(&mut value);
    let kinds = ["image", "build", "dockerComposeFile"]
        .iter()
        .filter(|k| value.get(**k).is_some())
        .count();
    if kinds == 0 {
        return Err(ConfigError::Other {
            path: path.into(),
            message: "the config is missing one of \"image\", \"build\" (\"dockerFile\") or \"dockerComposeFile\"".into(),
        });
    }
    if value.get("dockerComposeFile").is_some() && value.get("service").is_none() {
        return Err(ConfigError::Other {
            path: path.into(),
            message:
                "\"dockerComposeFile\" needs \"service\": the name of the service to connect to"
                    .into(),
        });
    }
    if value.get("build").is_some() && value.pointer("/build/dockerfile").is_none() {
        return Err(ConfigError::Invalid {
            path: path.into(),
            pos: doc.pos("/build"),
            expected: "\"build\" to have \"dockerfile\" (the Dockerfile's path)".into(),
            found: "none".into(),
        });
    }
    Ok(ConfigFile {
        path: path.into(),
        text,
        value,
        warnings,
    })
}

/// `dockerFile`/`context` at the top level and `build.dockerFile` become
/// `build.dockerfile`/`build.context`, as the reference CLI does.
fn migrate_legacy(v: &mut Value) {
    let Some(m) = v.as_object_mut() else { return };
    if let Some(df) = m.remove("dockerFile") {
        let ctx = m.remove("context");
        let b = m
            .entry("build")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(b) = b.as_object_mut() {
            b.entry("dockerfile").or_insert(df);
            if let Some(c) = ctx {
                b.entry("context").or_insert(c);
            }
        }
    }
    if let Some(b) = m.get_mut("build").and_then(Value::as_object_mut)
        && let Some(df) = b.remove("dockerFile")
    {
        b.entry("dockerfile").or_insert(df);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<ConfigFile, ConfigError> {
        parse(Path::new("/w/.devcontainer/devcontainer.json"), text.into())
    }

    #[test]
    fn wrong_types_are_errors_with_line_and_column() {
        let e = p("{\n  \"image\": \"x\",\n  \"runArgs\": \"--init\"\n}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/w/.devcontainer/devcontainer.json:3:14: expected \"runArgs\" to be an array of strings, found the string \"--init\""
        );
        let e = p("{\"image\": \"x\", \"build\": {\"dockerfile\": 3}}").unwrap_err();
        assert!(
            e.to_string()
                .contains(":1:40: expected \"dockerfile\" to be a string"),
            "{e}"
        );
        let e = p("{\"image\": \"x\", \"waitFor\": \"never\"}").unwrap_err();
        assert!(e.to_string().contains("one of initializeCommand"), "{e}");
        let e = p("[1]").unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
        let e = p("{\"name\": \"x\"}").unwrap_err();
        assert!(e.to_string().contains("missing one of"), "{e}");
    }

    #[test]
    fn unknown_properties_warn_with_the_closest_name() {
        let c = p("{\"image\": \"x\",\n \"postCreateComand\": \"true\", \"zzzz\": 1}").unwrap();
        assert_eq!(c.warnings.len(), 2);
        assert_eq!(
            c.warnings[0].to_string(),
            "/w/.devcontainer/devcontainer.json:2:2: unknown property \"postCreateComand\" is ignored (did you mean \"postCreateCommand\"?)"
        );
        assert!(!c.warnings[1].message.contains("did you mean"));
    }

    #[test]
    fn legacy_dockerfile_moves_into_build() {
        let c = p("{\"dockerFile\": \"Dockerfile\", \"context\": \"..\"}").unwrap();
        assert_eq!(c.value["build"]["dockerfile"], "Dockerfile");
        assert_eq!(c.value["build"]["context"], "..");
    }

    #[test]
    fn every_lifecycle_form_is_accepted() {
        p(
            r#"{"image": "x", "onCreateCommand": "a", "postCreateCommand": ["b", "c"],
             "postStartCommand": {"one": "x", "two": ["y"]}}"#,
        )
        .unwrap();
        assert!(p(r#"{"image": "x", "postStartCommand": {"one": 1}}"#).is_err());
    }

    #[test]
    fn locate_follows_the_spec_order_and_lists_ambiguity() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path();
        assert!(matches!(locate(w, None), Err(ConfigError::NotFound(_))));
        std::fs::create_dir_all(w.join(".devcontainer/a")).unwrap();
        std::fs::create_dir_all(w.join(".devcontainer/b")).unwrap();
        std::fs::write(w.join(".devcontainer/a/devcontainer.json"), "{}").unwrap();
        assert_eq!(
            locate(w, None).unwrap(),
            w.join(".devcontainer/a/devcontainer.json")
        );
        std::fs::write(w.join(".devcontainer/b/devcontainer.json"), "{}").unwrap();
        assert!(matches!(
            locate(w, None),
            Err(ConfigError::Ambiguous { .. })
        ));
        std::fs::write(w.join(".devcontainer.json"), "{}").unwrap();
        assert_eq!(locate(w, None).unwrap(), w.join(".devcontainer.json"));
        std::fs::write(w.join(".devcontainer/devcontainer.json"), "{}").unwrap();
        assert_eq!(
            locate(w, None).unwrap(),
            w.join(".devcontainer/devcontainer.json")
        );
        assert_eq!(
            locate(w, Some(Path::new(".devcontainer/b/devcontainer.json"))).unwrap(),
            w.join(".devcontainer/b/devcontainer.json")
        );
    }
}
