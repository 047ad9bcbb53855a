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

/// The SDK of the checkout this binary was built from, when it is still there.
fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().ok())
        .flatten()
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
            let sdk = match sdk.or_else(default_sdk) {
                Some(sdk) if sdk.join("Cargo.toml").is_file() => std::path::absolute(&sdk)
                    .context("resolving the SDK's path")
                    .map_err(usage)?,
                Some(sdk) => {
                    return Err(usage(anyhow::anyhow!(
                        "{} is not the fluxo-sdk crate (no Cargo.toml)",
                        sdk.display()
                    )));
                }
                None => {
                    return Err(usage(anyhow::anyhow!(
                        "the SDK this fluxo was built with is gone: name a copy of fluxo's sdk/ with --sdk"
                    )));
                }
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

    let written = write_files(&dir, files, &name, sdk.as_deref()).and_then(|()| match &tools {
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

/// Writes `files` under `dir` with the placeholders filled.
fn write_files(
    dir: &Path,
    files: &[TemplateFile],
    name: &str,
    sdk: Option<&Path>,
) -> anyhow::Result<()> {
    for (path, text) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut text = text.replace("{{name}}", name);
        if let Some(sdk) = sdk {
            // Inside a TOML basic string: backslashes and quotes escaped.
            let path = sdk
                .display()
                .to_string()
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            text = text.replace("{{sdk}}", &path);
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
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
            for (path, text) in files {
                let filled = text.replace("{{name}}", "x").replace("{{sdk}}", "/sdk");
                assert!(
                    !filled.contains("{{"),
                    "{lang}/{path}: an unknown placeholder"
                );
            }
        }
    }
}
