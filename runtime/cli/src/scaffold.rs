//! `fluxo new --lang rust|python|js NAME`: a ready action project — the action (a
//! greeting: read the contact's name, tag, reply), a native test against a mock host, and
//! a README with the three commands (test, build, upload).
//!
//! The templates live in `runtime/cli/templates/`, compiled into the binary; `{{name}}`
//! and, for Rust, `{{sdk}}` are the only placeholders, filled by plain substitution.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use fluxo_core::ActionName;

use crate::local::{language_tools, usage};
use crate::{Lang, UsageError};

/// One file of a template: its path in the project and its text.
type TemplateFile = (&'static str, &'static str);

const RUST: &[TemplateFile] = &[
    ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
    ("README.md", include_str!("../templates/rust/README.md")),
    (".gitignore", include_str!("../templates/rust/.gitignore")),
];

const PYTHON: &[TemplateFile] = &[
    ("app.py", include_str!("../templates/python/app.py")),
    (
        "test_app.py",
        include_str!("../templates/python/test_app.py"),
    ),
    (
        "fluxo_mock.py",
        include_str!("../templates/python/fluxo_mock.py"),
    ),
    ("README.md", include_str!("../templates/python/README.md")),
    (".gitignore", include_str!("../templates/python/.gitignore")),
];

const JS: &[TemplateFile] = &[
    ("action.js", include_str!("../templates/js/action.js")),
    (
        "action.test.js",
        include_str!("../templates/js/action.test.js"),
    ),
    ("package.json", include_str!("../templates/js/package.json")),
    ("README.md", include_str!("../templates/js/README.md")),
    (".gitignore", include_str!("../templates/js/.gitignore")),
    (
        "fluxo-mock/register.js",
        include_str!("../templates/js/fluxo-mock/register.js"),
    ),
    (
        "fluxo-mock/hooks.js",
        include_str!("../templates/js/fluxo-mock/hooks.js"),
    ),
    (
        "fluxo-mock/host.js",
        include_str!("../templates/js/fluxo-mock/host.js"),
    ),
    (
        "fluxo-mock/contact.js",
        include_str!("../templates/js/fluxo-mock/contact.js"),
    ),
    (
        "fluxo-mock/http.js",
        include_str!("../templates/js/fluxo-mock/http.js"),
    ),
    (
        "fluxo-mock/log.js",
        include_str!("../templates/js/fluxo-mock/log.js"),
    ),
    (
        "fluxo-mock/secrets.js",
        include_str!("../templates/js/fluxo-mock/secrets.js"),
    ),
    (
        "fluxo-mock/state.js",
        include_str!("../templates/js/fluxo-mock/state.js"),
    ),
    (
        "fluxo-mock/email.js",
        include_str!("../templates/js/fluxo-mock/email.js"),
    ),
];

/// Where a Rust project keeps the SDK installed with it, relative to the project.
const SDK_DIR: &str = ".fluxo/sdk";

/// The SDK this binary was built with, installed into each Rust project (`SDK_DIR`)
/// until `fluxo-sdk` is on a registry: its sources and the world's WIT as they are in
/// the checkout, with manifests of their own (no workspace to inherit from). The
/// manifests' `{{version}}` is this fluxo's version.
const SDK: &[TemplateFile] = &[
    (
        "fluxo-sdk/Cargo.toml",
        include_str!("../templates/sdk/fluxo-sdk/Cargo.toml"),
    ),
    (
        "fluxo-sdk/README.md",
        include_str!("../../../sdk/README.md"),
    ),
    (
        "fluxo-sdk/src/lib.rs",
        include_str!("../../../sdk/src/lib.rs"),
    ),
    (
        "fluxo-sdk/src/backend/mod.rs",
        include_str!("../../../sdk/src/backend/mod.rs"),
    ),
    (
        "fluxo-sdk/src/backend/wasm.rs",
        include_str!("../../../sdk/src/backend/wasm.rs"),
    ),
    (
        "fluxo-sdk/src/contact.rs",
        include_str!("../../../sdk/src/contact.rs"),
    ),
    (
        "fluxo-sdk/src/email.rs",
        include_str!("../../../sdk/src/email.rs"),
    ),
    (
        "fluxo-sdk/src/error.rs",
        include_str!("../../../sdk/src/error.rs"),
    ),
    (
        "fluxo-sdk/src/event.rs",
        include_str!("../../../sdk/src/event.rs"),
    ),
    (
        "fluxo-sdk/src/http.rs",
        include_str!("../../../sdk/src/http.rs"),
    ),
    (
        "fluxo-sdk/src/log.rs",
        include_str!("../../../sdk/src/log.rs"),
    ),
    (
        "fluxo-sdk/src/outcome.rs",
        include_str!("../../../sdk/src/outcome.rs"),
    ),
    (
        "fluxo-sdk/src/secrets.rs",
        include_str!("../../../sdk/src/secrets.rs"),
    ),
    (
        "fluxo-sdk/src/state.rs",
        include_str!("../../../sdk/src/state.rs"),
    ),
    (
        "fluxo-sdk/src/testing.rs",
        include_str!("../../../sdk/src/testing.rs"),
    ),
    (
        "fluxo-sdk/src/value.rs",
        include_str!("../../../sdk/src/value.rs"),
    ),
    (
        "fluxo-sdk-macros/Cargo.toml",
        include_str!("../templates/sdk/fluxo-sdk-macros/Cargo.toml"),
    ),
    (
        "fluxo-sdk-macros/src/lib.rs",
        include_str!("../../../sdk/macros/src/lib.rs"),
    ),
];

/// Installs the SDK into the Rust project at `dir` (`SDK_DIR`), the world's WIT with it.
fn install_sdk(dir: &Path) -> anyhow::Result<()> {
    let root = dir.join(SDK_DIR);
    for (path, text) in SDK {
        // Only the manifests have placeholders; the sources are copied as they are.
        if path.ends_with("Cargo.toml") {
            write_file(
                &root.join(path),
                &text.replace("{{version}}", env!("CARGO_PKG_VERSION")),
            )?;
        } else {
            write_file(&root.join(path), text)?;
        }
    }
    fluxo_toolchain::lang::write_world(&root.join("fluxo-sdk/wit"))?;
    Ok(())
}

/// Writes `text` at `path`, making its directory.
fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Creates the project `name` in `dir` (default `./NAME`), which must not exist or be
/// empty. Python projects get the world's bindings for their tests (the Python toolchain
/// is needed: `tools`, as for `fluxo build`); Rust projects depend on the SDK at `sdk`
/// (default: this checkout's). Nothing is left behind when it fails.
pub(crate) fn new_project(
    name: &str,
    lang: Lang,
    dir: Option<PathBuf>,
    sdk: Option<PathBuf>,
    tools: Option<&Path>,
) -> Result<ExitCode, UsageError> {
    let name = ActionName::parse(name)
        .map_err(|error| usage(anyhow::anyhow!("{error}")))?
        .to_string();
    let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
    let existed = dir.exists();
    if existed && !dir.is_dir() {
        return Err(usage(anyhow::anyhow!(
            "{} is a file: choose a directory",
            dir.display()
        )));
    }
    if existed
        && std::fs::read_dir(&dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(true)
    {
        return Err(usage(anyhow::anyhow!(
            "{} exists and is not empty: choose another directory",
            dir.display()
        )));
    }
    let (files, sdk) = match lang {
        Lang::Rust => {
            let sdk = match sdk {
                Some(sdk) if sdk.join("Cargo.toml").is_file() => Sdk::At(
                    std::path::absolute(&sdk)
                        .context("resolving the SDK's path")
                        .map_err(usage)?,
                ),
                Some(sdk) => {
                    return Err(usage(anyhow::anyhow!(
                        "{} is not the fluxo-sdk crate (no Cargo.toml)",
                        sdk.display()
                    )));
                }
                None => Sdk::Installed,
            };
            (RUST, Some(sdk))
        }
        Lang::Python => (PYTHON, None),
        Lang::Js => (JS, None),
    };
    let tools = match lang {
        Lang::Python => Some(language_tools(tools)?),
        Lang::Rust | Lang::Js => None,
    };

    let written = write_files(&dir, files, &name, sdk.as_ref())
        .and_then(|()| match sdk {
            Some(Sdk::Installed) => install_sdk(&dir),
            Some(Sdk::At(_)) | None => Ok(()),
        })
        .and_then(|()| match &tools {
            Some(tools) => {
                let wit = dir.join(".fluxo-wit");
                let made = fluxo_toolchain::lang::write_world(&wit)
                    .and_then(|wit| {
                        tools.python_bindings(
                            &wit,
                            fluxo_toolchain::lang::WORLD,
                            &dir.join(".fluxo/bindings"),
                        )
                    })
                    .map_err(anyhow::Error::from);
                let _ = std::fs::remove_dir_all(&wit);
                made
            }
            None => Ok(()),
        });
    if let Err(error) = written {
        // Leave the place as it was: an empty directory given stays, emptied.
        if existed {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Err(usage(error.context(format!("creating {}", dir.display()))));
    }

    let test = match lang {
        Lang::Rust => "cargo test",
        Lang::Python => "python3 -m unittest",
        Lang::Js => "npm test",
    };
    eprintln!(
        "fluxo: created the {} action {name} in {}; next, in that directory: `{test}`, then the build and upload in its README.md",
        match lang {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        },
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Which `fluxo-sdk` a Rust project depends on.
#[derive(Debug)]
enum Sdk {
    /// The copy `fluxo new` installs into the project (`SDK_DIR`).
    Installed,
    /// A copy the user named (`--sdk`).
    At(PathBuf),
}

/// Writes `files` under `dir` with the placeholders filled.
fn write_files(
    dir: &Path,
    files: &[TemplateFile],
    name: &str,
    sdk: Option<&Sdk>,
) -> anyhow::Result<()> {
    for (path, text) in files {
        let mut text = text.replace("{{name}}", name);
        let sdk_path = match sdk {
            Some(Sdk::Installed) => Some(format!("{SDK_DIR}/fluxo-sdk")),
            Some(Sdk::At(path)) => Some(path.display().to_string()),
            None => None,
        };
        if let Some(path) = sdk_path {
            // Inside a TOML basic string: backslashes and quotes escaped.
            let path = path.replace('\\', "\\\\").replace('"', "\\\"");
            text = text.replace("{{sdk}}", &path);
        }
        write_file(&dir.join(path), &text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_file_is_compiled_in_and_only_known_placeholders_remain() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        for (lang, files) in [("rust", RUST), ("python", PYTHON), ("js", JS)] {
            let mut on_disk = Vec::new();
            let mut stack = vec![root.join(lang)];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        on_disk.push(
                            path.strip_prefix(root.join(lang))
                                .unwrap()
                                .to_string_lossy()
                                .into_owned(),
                        );
                    }
                }
            }
            on_disk.sort();
            let mut listed: Vec<String> = files.iter().map(|(p, _)| (*p).to_owned()).collect();
            listed.sort();
            assert_eq!(listed, on_disk, "{lang}: templates/ and the list differ");
            let manifests = SDK.iter().filter(|(path, _)| path.ends_with("Cargo.toml"));
            for (path, text) in files.iter().chain(manifests) {
                let filled = text
                    .replace("{{name}}", "x")
                    .replace("{{sdk}}", "/sdk")
                    .replace("{{version}}", "0.1.0");
                assert!(
                    !filled.contains("{{"),
                    "{lang}/{path}: an unknown placeholder"
                );
            }
        }
    }

    /// Every file of `sdk/` (but its manifests, written for the copy) is installed.
    #[test]
    fn the_installed_sdk_is_every_file_of_the_sdk() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk");
        let mut on_disk = Vec::new();
        let mut stack = vec![sdk.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let relative = path
                    .strip_prefix(&sdk)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if relative == "wit" {
                    continue; // written from the world the toolchain embeds
                }
                if path.is_dir() {
                    stack.push(path);
                } else if !relative.ends_with("Cargo.toml") {
                    let relative = match relative.strip_prefix("macros/") {
                        Some(rest) => format!("fluxo-sdk-macros/{rest}"),
                        None => format!("fluxo-sdk/{relative}"),
                    };
                    on_disk.push(relative);
                }
            }
        }
        on_disk.sort();
        let mut installed: Vec<String> = SDK
            .iter()
            .map(|(path, _)| (*path).to_owned())
            .filter(|path| !path.ends_with("Cargo.toml"))
            .collect();
        installed.sort();
        assert_eq!(installed, on_disk);
    }

    /// The copy's manifests name the dependencies the workspace builds the SDK with.
    #[test]
    fn the_installed_sdk_s_manifests_match_the_workspace_s() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let read = |path: &Path| -> toml::Table {
            toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        };
        let workspace = read(&root.join("Cargo.toml"));
        let shared = &workspace["workspace"]["dependencies"];
        // A dependency's table as a manifest that names it directly would write it.
        let direct = |name: &str, spec: &toml::Value| -> toml::Value {
            let mut spec = match spec {
                toml::Value::String(version) => {
                    let mut table = toml::Table::new();
                    table.insert("version".into(), version.clone().into());
                    table
                }
                toml::Value::Table(table) => table.clone(),
                other => panic!("{name}: {other}"),
            };
            spec.remove("path");
            spec.remove("workspace");
            toml::Value::Table(spec)
        };
        let package = workspace["workspace"]["package"].as_table().unwrap();
        for (crate_dir, copy) in [("sdk", "fluxo-sdk"), ("sdk/macros", "fluxo-sdk-macros")] {
            let original = read(&root.join(crate_dir).join("Cargo.toml"));
            let manifest = SDK
                .iter()
                .find(|(path, _)| *path == format!("{copy}/Cargo.toml"))
                .unwrap()
                .1
                .replace("{{version}}", "0.1.0");
            let installed: toml::Table = toml::from_str(&manifest).unwrap();
            for field in ["version", "edition", "rust-version", "license"] {
                assert_eq!(
                    installed["package"][field], package[field],
                    "{copy}: package.{field}"
                );
            }
            let sections = |manifest: &toml::Table| -> Vec<(String, toml::Table)> {
                let mut sections = vec![(
                    "dependencies".to_owned(),
                    manifest
                        .get("dependencies")
                        .and_then(toml::Value::as_table)
                        .cloned()
                        .unwrap_or_default(),
                )];
                if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
                    for (target, table) in targets {
                        sections.push((
                            target.clone(),
                            table["dependencies"]
                                .as_table()
                                .cloned()
                                .unwrap_or_default(),
                        ));
                    }
                }
                sections
            };
            let installed_sections = sections(&installed);
            for (section, dependencies) in sections(&original) {
                let (_, copied) = installed_sections
                    .iter()
                    .find(|(name, _)| *name == section)
                    .unwrap_or_else(|| panic!("{copy}: no {section}"));
                let names = |table: &toml::Table| table.keys().cloned().collect::<Vec<_>>();
                assert_eq!(names(copied), names(&dependencies), "{copy}: {section}");
                for (name, spec) in &dependencies {
                    if name.starts_with("fluxo-") {
                        continue; // by path in the copy
                    }
                    let wanted = match spec.get("workspace") {
                        Some(_) => direct(name, &shared[name.as_str()]),
                        None => direct(name, spec),
                    };
                    assert_eq!(
                        direct(name, &copied[name]),
                        wanted,
                        "{copy}: {section}: {name}"
                    );
                }
            }
        }
    }
}
