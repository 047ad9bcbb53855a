//! Python and JavaScript actions: the pinned toolchains `scripts/setup-toolchain` installs
//! into the project's tool directory (`.tools/`, or `FLUXO_TOOLS_DIR`: the caller says
//! which), driven here.
//!
//! - **Python**: `componentize-py` (`toolchain/lang/requirements.txt`) bundles CPython,
//!   the action's module and what it imports, pre-initialized, into one component
//!   (about 18 MB). Its default build imports WASI 0.2 `cli`, `clocks`, `filesystem`,
//!   `random` and `sockets`, which the host serves empty or deny-all.
//! - **JavaScript**: `jco componentize` (`toolchain/lang/package.json`) with the QuickJS
//!   backend, synchronous (about 1.6 MB). jco's default backend, StarlingMonkey, makes
//!   12 MB components that import `wasi:http`, which the host refuses; QuickJS's default
//!   exports use the component model's async ABI, which this host does not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ToolchainError;

/// Where the tools are named in errors.
pub const LANG_SETUP_HINT: &str = "install the Python and JavaScript toolchains with `scripts/setup-toolchain` (componentize-py from PyPI, jco from npm, into .tools/)";

/// The `fluxo:action` world's WIT files, as this build of Fluxo serves them: what a
/// Python or JavaScript action is built against when no other WIT is given.
pub const WORLD_FILES: [(&str, &str); 8] = [
    ("world.wit", include_str!("../../wit/world.wit")),
    ("types.wit", include_str!("../../wit/types.wit")),
    ("http.wit", include_str!("../../wit/http.wit")),
    ("email.wit", include_str!("../../wit/email.wit")),
    ("contact.wit", include_str!("../../wit/contact.wit")),
    ("log.wit", include_str!("../../wit/log.wit")),
    ("state.wit", include_str!("../../wit/state.wit")),
    ("secrets.wit", include_str!("../../wit/secrets.wit")),
];

/// The world's name in [`WORLD_FILES`].
pub const WORLD: &str = "action";

/// Writes [`WORLD_FILES`] into `dir` (created if absent) and returns it.
///
/// # Errors
/// [`ToolchainError::Io`] when a file cannot be written.
pub fn write_world(dir: &Path) -> Result<PathBuf, ToolchainError> {
    let io = |path: PathBuf| move |source| ToolchainError::Io { path, source };
    std::fs::create_dir_all(dir).map_err(io(dir.to_owned()))?;
    for (name, text) in WORLD_FILES {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(path.clone()))?;
    }
    Ok(dir.to_owned())
}

/// A language with a toolchain besides Rust's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Python 3, through `componentize-py`.
    Python,
    /// JavaScript (an ES module), through `jco componentize --backend qjs`.
    JavaScript,
}

impl Lang {
    /// The name used on the command line and in errors (`python`, `js`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::JavaScript => "js",
        }
    }

    /// The tool's path inside the tool directory.
    fn tool(self) -> &'static str {
        match self {
            Self::Python => "python/bin/componentize-py",
            Self::JavaScript => "node/node_modules/.bin/jco",
        }
    }
}

/// The installed language toolchains, in one tool directory.
#[derive(Debug, Clone)]
pub struct LanguageTools {
    dir: PathBuf,
}

impl LanguageTools {
    /// The tools in `dir` (a directory `scripts/setup-toolchain` filled).
    #[must_use]
    pub fn in_dir(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The executable that builds `lang`'s actions.
    ///
    /// # Errors
    /// [`ToolchainError::LanguageNotInstalled`] when it is not installed.
    pub fn tool(&self, lang: Lang) -> Result<PathBuf, ToolchainError> {
        let path = self.dir.join(lang.tool());
        if path.is_file() {
            Ok(path)
        } else {
            Err(ToolchainError::LanguageNotInstalled {
                lang: lang.as_str(),
                path,
            })
        }
    }

    /// Builds the Python module `module` (a file `module.py` in `app_dir`, defining a
    /// `WitWorld` class with a `run(self, event)` method) against the world `world` of the
    /// WIT package at `wit`; returns the component's bytes.
    ///
    /// # Errors
    /// When the tool is missing or fails (its diagnostics go to this process's stderr),
    /// or its output cannot be read.
    pub fn build_python(
        &self,
        app_dir: &Path,
        module: &str,
        wit: &Path,
        world: &str,
        scratch: &Path,
    ) -> Result<Vec<u8>, ToolchainError> {
        let out = scratch.join(format!("{module}.python.wasm"));
        let tool = self.tool(Lang::Python)?;
        // componentize-py byte-compiles the app where it finds it (`__pycache__/`): build a
        // copy, so the source tree (and cargo's view of it) stays as it was.
        let copy = scratch.join(format!("{module}.python-src"));
        if copy.exists() {
            std::fs::remove_dir_all(&copy).map_err(|source| ToolchainError::Io {
                path: copy.clone(),
                source,
            })?;
        }
        copy_tree(app_dir, &copy)?;
        let mut command = Command::new(tool);
        command
            .arg("--wit-path")
            .arg(wit)
            .arg("--world")
            .arg(world)
            .arg("componentize")
            .arg("--python-path")
            .arg(&copy)
            .arg(module)
            .arg("--output")
            .arg(&out);
        run(command, Lang::Python, app_dir)?;
        crate::read(&out)
    }

    /// Writes the Python bindings of the world `world` of the WIT package at `wit` into
    /// `out` (`wit_world/`, `componentize_py_types.py`, …): what a native test of a
    /// Python action imports in place of the host.
    ///
    /// # Errors
    /// When the tool is missing or fails.
    pub fn python_bindings(
        &self,
        wit: &Path,
        world: &str,
        out: &Path,
    ) -> Result<(), ToolchainError> {
        let mut command = Command::new(self.tool(Lang::Python)?);
        command
            .arg("--wit-path")
            .arg(wit)
            .arg("--world")
            .arg(world)
            .arg("--quiet")
            .arg("bindings")
            .arg(out);
        run(command, Lang::Python, out)
    }

    /// Builds the ES module `source` (exporting `run(event)`) against the world `world` of
    /// the WIT package at `wit`, with jco's QuickJS backend, synchronous; returns the
    /// component's bytes.
    ///
    /// # Errors
    /// When the tool is missing or fails (its diagnostics go to this process's stderr),
    /// or its output cannot be read.
    pub fn build_js(
        &self,
        source: &Path,
        wit: &Path,
        world: &str,
        scratch: &Path,
    ) -> Result<Vec<u8>, ToolchainError> {
        let stem = source
            .file_stem()
            .map_or_else(|| "action".into(), |stem| stem.to_string_lossy());
        let out = scratch.join(format!("{stem}.js.wasm"));
        let tool = self.tool(Lang::JavaScript)?;
        // jco resolves a relative source against the source's own directory.
        let source = std::path::absolute(source).map_err(|source_error| ToolchainError::Io {
            path: source.to_owned(),
            source: source_error,
        })?;
        let wit = std::path::absolute(wit).map_err(|source| ToolchainError::Io {
            path: wit.to_owned(),
            source,
        })?;
        let mut command = Command::new(tool);
        command
            .arg("componentize")
            .arg(&source)
            .arg("--wit")
            .arg(&wit)
            .arg("--world-name")
            .arg(world)
            .args(["--backend", "qjs", "--backend-qjs-disable-async"])
            .arg("--out")
            .arg(&out);
        run(command, Lang::JavaScript, &source)?;
        crate::read(&out)
    }
}

/// Entries a Python app's copy leaves out: environments and caches, built components,
/// and what only its native tests use (the mock host, the tests).
fn left_out(name: &str) -> bool {
    name.starts_with('.')
        || matches!(
            name,
            "__pycache__" | "venv" | "node_modules" | "fluxo_mock.py" | "conftest.py"
        )
        || name.ends_with(".wasm")
        || (name.ends_with(".py") && (name.starts_with("test_") || name.ends_with("_test.py")))
}

/// Copies the app under `from` to `to`, following symbolic links (a link back to a
/// directory already being copied is skipped) and leaving out what [`left_out`] names.
fn copy_tree(from: &Path, to: &Path) -> Result<(), ToolchainError> {
    let mut visiting = Vec::new();
    copy_dir(from, to, &mut visiting)
}

fn copy_dir(from: &Path, to: &Path, visiting: &mut Vec<PathBuf>) -> Result<(), ToolchainError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ToolchainError::Io { path, source }
    };
    let real = std::fs::canonicalize(from).map_err(io(from))?;
    if visiting.contains(&real) {
        return Ok(());
    }
    visiting.push(real);
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let name = entry.file_name();
        if left_out(&name.to_string_lossy()) {
            continue;
        }
        let (source, target) = (entry.path(), to.join(&name));
        if std::fs::metadata(&source).map_err(io(&source))?.is_dir() {
            copy_dir(&source, &target, visiting)?;
        } else {
            std::fs::copy(&source, &target).map_err(io(&source))?;
        }
    }
    visiting.pop();
    Ok(())
}

/// Runs a language tool to completion, its output passed through.
fn run(mut command: Command, lang: Lang, input: &Path) -> Result<(), ToolchainError> {
    let shown = format!("{command:?}");
    let status = command.status().map_err(|source| ToolchainError::Spawn {
        command: shown,
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(ToolchainError::LanguageBuildFailed {
            lang: lang.as_str(),
            input: input.to_owned(),
            status: status.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_world_is_every_file_of_wit() {
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let mut on_disk: Vec<String> = std::fs::read_dir(&wit)
            .unwrap()
            .filter_map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                name.ends_with(".wit").then_some(name)
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = WORLD_FILES.iter().map(|(n, _)| (*n).to_owned()).collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "a file added to wit/ must be added to WORLD_FILES"
        );
        let dir = std::env::temp_dir().join(format!("fluxo-world-{}", std::process::id()));
        write_world(&dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("world.wit")).unwrap(),
            std::fs::read_to_string(wit.join("world.wit")).unwrap()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_tool_is_named_with_the_way_to_install_it() {
        let tools = LanguageTools {
            dir: PathBuf::from("/nonexistent/fluxo-tools"),
        };
        let error = tools.tool(Lang::Python).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("/nonexistent/fluxo-tools/python/bin/componentize-py")
                && text.contains("scripts/setup-toolchain"),
            "{text}"
        );
        let error = tools
            .build_js(
                Path::new("action.js"),
                Path::new("wit"),
                "action",
                Path::new("/tmp"),
            )
            .unwrap_err();
        assert!(
            matches!(
                error,
                ToolchainError::LanguageNotInstalled { lang: "js", .. }
            ),
            "{error:?}"
        );
    }
}
