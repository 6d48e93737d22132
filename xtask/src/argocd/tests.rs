//! The Argo CD health checks: the generated patch is current, and the
//! script, run in the dialect Argo CD runs it in (gopher-lua with only the
//! base, table and package libraries: `argocd-lua-health`, built by
//! `e2e/box/build-gopher-lua.sh`), gives the expected health of real objects
//! of the box in each state (`config/argocd/health_test.yaml`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use super::{PATCH, SCRIPT, key, kinds, render};
use crate::shell::repo_root;

/// The kinds whose objects the operator reports on; each has test data in
/// all three states. The rest (objects of the box without a status yet, or
/// with a refusal only) have what the box gave.
const SERVED: [&str; 9] = [
    "IptablesDnatRule",
    "IptablesEIP",
    "IptablesFIPRule",
    "IptablesSnatRule",
    "Subnet",
    "SwitchLBRule",
    "Vip",
    "Vpc",
    "VpcNatGateway",
];

fn argocd_dir() -> PathBuf {
    repo_root().join("config/argocd")
}

/// The runner, or a failure naming the command that builds it.
fn runner() -> PathBuf {
    let script = repo_root().join("e2e/box/build-gopher-lua.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--check")
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}the Lua tests need it: run `bash {}` (cargo xtask test does)",
        String::from_utf8_lossy(&out.stderr),
        script.display()
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[derive(Debug, Deserialize, PartialEq)]
struct Health {
    status: String,
    #[serde(default)]
    message: String,
}

/// Runs `script` against the object in `input`: Ok(health) or Err(stderr).
fn run(script: &Path, input: &Path) -> Result<Health, String> {
    let out = Command::new(runner())
        .arg(script)
        .arg(input)
        .output()
        .expect("argocd-lua-health runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "argocd-lua-health printed {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    health_status: Health,
    input_path: String,
}

#[derive(Debug, Deserialize)]
struct Table {
    tests: Vec<Case>,
}

#[test]
fn the_patch_is_generated_from_the_script() {
    let root = repo_root();
    let script = std::fs::read_to_string(root.join(SCRIPT)).unwrap();
    let on_disk = std::fs::read_to_string(root.join(PATCH)).unwrap_or_default();
    assert!(
        on_disk == render(&script),
        "{PATCH} is out of date, run `cargo xtask argocd`"
    );
}

#[test]
fn the_patch_carries_the_script_for_every_kind() {
    let root = repo_root();
    let script = std::fs::read_to_string(root.join(SCRIPT)).unwrap();
    let patch: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root.join(PATCH)).unwrap()).unwrap();
    assert_eq!(patch["kind"], "ConfigMap");
    assert_eq!(patch["metadata"]["name"], "argocd-cm");
    let data = patch["data"].as_object().expect("data");
    let want: BTreeSet<String> = kinds().iter().map(|k| key(k)).collect();
    let got: BTreeSet<String> = data.keys().cloned().collect();
    assert_eq!(got, want, "one key per kind of the API");
    assert_eq!(want.len(), vpcnet_api::crds::all().len());
    for (k, v) in data {
        assert_eq!(
            v.as_str().map(str::trim_end),
            Some(script.trim_end()),
            "{k}"
        );
    }
}

#[test]
fn the_runner_speaks_argos_dialect() {
    let dir = tempdir();
    let obj = dir.join("obj.json");
    std::fs::write(&obj, r#"{"metadata":{"generation":3},"status":{"n":2.5}}"#).unwrap();
    let probe = dir.join("probe.lua");
    // What Argo CD opens for an argocd-cm health script: base, table,
    // package, and os.time/os.date only through require("os").
    std::fs::write(
        &probe,
        r#"local os2 = require("os")
local seen = ""
for _, name in ipairs({"string", "math", "io", "os", "debug", "coroutine", "channel"}) do
  seen = seen .. name .. "=" .. type(_G[name]) .. " "
end
seen = seen .. "table=" .. type(table) .. " ipairs=" .. type(ipairs) .. " tostring=" .. type(tostring)
seen = seen .. " require(os).time=" .. type(os2.time) .. " require(os).date=" .. type(os2.date)
seen = seen .. " require(os).exit=" .. type(os2.exit)
seen = seen .. " generation=" .. type(obj.metadata.generation) .. ":" .. obj.metadata.generation
seen = seen .. " n=" .. obj.status.n
return {status = "Healthy", message = seen}
"#,
    )
    .unwrap();
    let h = run(&probe, &obj).expect("the probe runs");
    assert_eq!(
        h.message,
        "string=nil math=nil io=nil os=nil debug=nil coroutine=nil channel=nil \
         table=table ipairs=function tostring=function \
         require(os).time=function require(os).date=function require(os).exit=nil \
         generation=number:3 n=2.5"
    );

    // So a script that uses the string library fails, as it would in Argo.
    let uses_string = dir.join("string.lua");
    std::fs::write(
        &uses_string,
        "local s = string.lower(\"X\")\nreturn {status = \"Healthy\", message = s}\n",
    )
    .unwrap();
    let err = run(&uses_string, &obj).expect_err("string is nil");
    assert!(
        err.contains("attempt to index a non-table object(nil)"),
        "{err}"
    );
    // ... and so does a string method (strings have no metatable either).
    std::fs::write(
        &uses_string,
        "local s = (\"X\"):lower()\nreturn {status = \"Healthy\", message = s}\n",
    )
    .unwrap();
    assert!(run(&uses_string, &obj).is_err(), "string methods are nil");

    // An unknown status is Unknown, as Argo CD reports it.
    let bad = dir.join("bad.lua");
    std::fs::write(&bad, "return {status = \"Fine\"}\n").unwrap();
    assert_eq!(
        run(&bad, &obj).unwrap(),
        Health {
            status: "Unknown".into(),
            message: "Lua returned an invalid health status".into()
        }
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The script's code: comments dropped, string literals ("..." and '...',
/// which health.lua keeps on one line) emptied.
fn code(script: &str) -> String {
    let mut out = String::new();
    for line in script.lines() {
        let mut quote = None;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match quote {
                Some(_) if c == '\\' => {
                    chars.next();
                }
                Some(q) if c == q => {
                    quote = None;
                    out.push(c);
                }
                Some(_) => {}
                None if c == '"' || c == '\'' => {
                    quote = Some(c);
                    out.push(c);
                }
                None if c == '-' && chars.peek() == Some(&'-') => break,
                None => out.push(c),
            }
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_script_uses_no_library_argo_leaves_out() {
    let script = std::fs::read_to_string(repo_root().join(SCRIPT)).unwrap();
    let code = code(&script);
    for lib in ["string", "math", "io", "os", "debug", "coroutine", "utf8"] {
        for needle in [format!("{lib}."), format!("{lib}[")] {
            assert!(
                !code.contains(&needle),
                "health.lua uses `{needle}`: Argo CD runs argocd-cm scripts without it"
            );
        }
    }
    // No method calls on values (`s:find(...)`): strings have no methods there.
    assert!(
        !code.contains(':'),
        "health.lua calls a method: strings have none without the string library"
    );
}

#[test]
fn real_objects_of_the_box_get_their_expected_health() {
    let dir = argocd_dir();
    let table: Table =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("health_test.yaml")).unwrap())
            .unwrap();
    let script = dir.join("health.lua");
    let mut failures = Vec::new();
    let mut states: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut listed = BTreeSet::new();
    for case in &table.tests {
        let input = dir.join(&case.input_path);
        listed.insert(input.clone());
        let kind_dir = Path::new(&case.input_path)
            .parent()
            .and_then(|p| p.file_name())
            .unwrap()
            .to_string_lossy()
            .to_string();
        let obj: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&input).unwrap()).unwrap();
        assert_eq!(
            obj["kind"], kind_dir,
            "{} holds a {}",
            case.input_path, obj["kind"]
        );
        assert_eq!(obj["apiVersion"], "vpcnet.io/v1", "{}", case.input_path);
        states
            .entry(kind_dir)
            .or_default()
            .insert(case.health_status.status.clone());
        match run(&script, &input) {
            Ok(h) if h == case.health_status => {}
            Ok(h) => failures.push(format!(
                "{}: got {h:?}, want {:?}",
                case.input_path, case.health_status
            )),
            Err(e) => failures.push(format!("{}: the script failed: {e}", case.input_path)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every file of testdata/ is in the table, every kind has data, and each
    // kind the operator reports on has data in all three states.
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(dir.join("testdata")).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            for f in std::fs::read_dir(entry.path()).unwrap().flatten() {
                files.insert(f.path());
            }
        }
    }
    let unlisted: Vec<_> = files.difference(&listed).collect();
    assert!(unlisted.is_empty(), "not in health_test.yaml: {unlisted:?}");
    assert_eq!(
        states.keys().cloned().collect::<Vec<_>>(),
        kinds(),
        "test data for every kind"
    );
    for kind in SERVED {
        let want: BTreeSet<String> = ["Degraded", "Healthy", "Progressing"]
            .map(String::from)
            .into();
        assert_eq!(states[kind], want, "{kind}");
    }
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "vpcnet-argocd-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
