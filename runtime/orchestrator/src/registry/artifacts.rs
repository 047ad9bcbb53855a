//! The local artifact cache: precompiled components in a host-owned directory, each
//! written so it can never be read torn — a unique temporary file per compile (created
//! exclusively), fsynced, its SHA-256 written beside it the same way, both renamed into
//! place, the directory fsynced — and checked against that SHA-256 before it is
//! deserialized. Names are made by the host (`<component hash>-<engine fingerprint>`);
//! the directory is opened with `cap-std`, so no path can leave it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use fluxo_sandbox::load::sha256_hex;

/// Leftovers of compiles that never finished carry this suffix.
const PARTIAL: &str = ".partial";

/// The artifact directory.
pub(crate) struct Artifacts {
    root: PathBuf,
    dir: Dir,
}

/// A failure of the artifact directory.
#[derive(Debug, thiserror::Error)]
#[error("artifact cache: {0}")]
pub(crate) struct ArtifactError(pub(crate) String);

fn failed(what: &str) -> impl Fn(std::io::Error) -> ArtifactError + '_ {
    move |error| ArtifactError(format!("{what}: {error}"))
}

impl Artifacts {
    /// Opens (creating, mode 0700) `root`, removing leftovers of unfinished compiles.
    pub(crate) fn open(root: &Path) -> Result<Self, ArtifactError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(failed("creating the directory"))?;
        let dir = Dir::open_ambient_dir(root, ambient_authority())
            .map_err(failed("opening the directory"))?;
        for entry in dir.entries().map_err(failed("listing"))? {
            let entry = entry.map_err(failed("listing"))?;
            if let Some(name) = entry.file_name().to_str()
                && name.ends_with(PARTIAL)
            {
                remove_logged(&dir, name);
            }
        }
        Ok(Self {
            root: root.to_owned(),
            dir,
        })
    }

    /// The file name of an artifact.
    pub(crate) fn name(hash: &str, fingerprint: &str) -> String {
        format!("{hash}-{fingerprint}.cwasm")
    }

    /// The artifact and its recorded checksum, when both are there.
    pub(crate) fn read(&self, name: &str) -> Result<Option<(Vec<u8>, String)>, ArtifactError> {
        let checksum = match self.dir.read_to_string(format!("{name}.sha256")) {
            Ok(text) => text.trim().to_owned(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(failed("reading a checksum")(error)),
        };
        match self.dir.read(name) {
            Ok(bytes) => Ok(Some((bytes, checksum))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(failed("reading an artifact")(error)),
        }
    }

    /// A fresh temporary file for one compile of `name`: created exclusively (no other
    /// compile shares it), to be written by the compiler and passed to [`Self::finish`].
    pub(crate) fn reserve(&self, name: &str) -> Result<(String, PathBuf), ArtifactError> {
        let unique = fluxo_sandbox::RunId::new();
        let temp = format!(".{name}.{unique}{PARTIAL}");
        self.dir
            .open_with(&temp, OpenOptions::new().write(true).create_new(true))
            .map_err(failed("reserving a temporary file"))?;
        Ok((temp.clone(), self.root.join(temp)))
    }

    /// Puts a compiled temporary file in place as `name`: fsync, checksum beside it,
    /// renames, directory fsync. Returns the checksum.
    pub(crate) fn finish(&self, temp: &str, name: &str) -> Result<String, ArtifactError> {
        let bytes = self
            .dir
            .read(temp)
            .map_err(failed("reading the compiled file"))?;
        self.dir
            .open_with(temp, OpenOptions::new().write(true))
            .and_then(|file| file.sync_all())
            .map_err(failed("syncing the compiled file"))?;
        let checksum = sha256_hex(&bytes);
        let sum_temp = format!("{temp}.sha256{PARTIAL}");
        let mut sum = self
            .dir
            .open_with(&sum_temp, OpenOptions::new().write(true).create_new(true))
            .map_err(failed("writing a checksum"))?;
        sum.write_all(checksum.as_bytes())
            .and_then(|()| sum.sync_all())
            .map_err(failed("writing a checksum"))?;
        self.dir
            .rename(temp, &self.dir, name)
            .map_err(failed("renaming an artifact"))?;
        self.dir
            .rename(&sum_temp, &self.dir, format!("{name}.sha256"))
            .map_err(failed("renaming a checksum"))?;
        std::fs::File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(failed("syncing the directory"))?;
        Ok(checksum)
    }

    /// Removes a temporary file (a failed compile).
    pub(crate) fn discard(&self, temp: &str) {
        remove_logged(&self.dir, temp);
    }

    /// Removes an artifact and its checksum (corrupt, or its component deleted).
    pub(crate) fn remove(&self, name: &str) {
        remove_logged(&self.dir, &format!("{name}.sha256"));
        remove_logged(&self.dir, name);
    }

    /// Removes every artifact of component `hash`, whatever the engine.
    pub(crate) fn remove_component(&self, hash: &str) {
        let Ok(entries) = self.dir.entries() else {
            return;
        };
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str()
                && name.starts_with(&format!("{hash}-"))
            {
                remove_logged(&self.dir, name);
            }
        }
    }

    /// The names in the directory (for tests and checks).
    pub(crate) fn list(&self) -> Vec<String> {
        self.dir
            .entries()
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Removes `name` from `dir`; a failure other than "already gone" is logged (a file left
/// behind is debris, not lost data: the next start or delete tries again).
fn remove_logged(dir: &Dir, name: &str) {
    match dir.remove_file(name) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(file = name, %error, "could not remove an artifact file"),
    }
}
