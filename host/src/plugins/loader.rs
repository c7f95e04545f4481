//! Opening plugin libraries: scan a folder, refuse files that other users could have
//! written, shadow-copy each `.so`, load it through abi_stable, check versions and
//! capabilities, and summarise refusals in one line.
//!
//! Libraries are never unloaded (abi_stable does not support it). Each file is copied to a
//! unique shadow path before loading, so the original can be replaced on disk without
//! crashing the host, and loading the same path twice yields fresh code, not the cached
//! first mapping. The shadow copy is deleted once mapped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use abi_stable::library::{lib_header_from_path, LibraryError};
use murmur_plugin_api::ffi::PluginModuleRef;
use murmur_plugin_api::{Manifest, API_VERSION};

use crate::services::HOST_CAPABILITIES;

/// A loaded, checked plugin library.
pub struct PluginLibrary {
    /// The file it was loaded from (not the shadow copy).
    pub file: PathBuf,
    /// The SHA-256 of the bytes loaded (lowercase hex), which `sha256` pins check.
    pub sha256: String,
    /// What it exports.
    pub manifest: Manifest,
    pub(crate) module: PluginModuleRef,
}

impl std::fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLibrary")
            .field("file", &self.file)
            .field("manifest", &self.manifest)
            .finish_non_exhaustive()
    }
}

/// A file that was not loaded, and why, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The file.
    pub file: PathBuf,
    /// Why, short.
    pub reason: String,
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

fn shadow_dir() -> PathBuf {
    std::env::temp_dir().join(format!("murmur-shadow-{}", std::process::id()))
}

/// Whether Murmur may load code from a plugin folder or file: it must belong to this user
/// or root, and no other user may write to it (as ssh requires of its keys). Otherwise the
/// reason and the fix.
pub fn check_permissions(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let me = rustix::process::geteuid().as_raw();
    let fix = "or set `allow_insecure_plugins = true` in the config to load it anyway";
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "{} belongs to user id {}, neither you ({me}) nor root: its owner can change the code Murmur runs. Fix: `chown {me} {}`, {fix}",
            path.display(),
            meta.uid(),
            path.display()
        ));
    }
    let mode = meta.mode() & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => return Ok(()),
        (true, false) => "its group",
        (false, true) => "every user",
        (true, true) => "its group and every user",
    };
    Err(format!(
        "{} can be written by {who} (mode {mode:04o}): whoever can write it can run code inside Murmur. Fix: `chmod go-w {}`, {fix}",
        path.display(),
        path.display()
    ))
}

/// Loads one library file; with `check_owner`, only if [`check_permissions`] allows it.
pub fn load_file(file: &Path, check_owner: bool) -> Result<PluginLibrary, Rejection> {
    let reject = |reason: String| Rejection {
        file: file.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(file).map_err(|e| reject(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(reject("not a regular file".into()));
    }
    if check_owner {
        check_permissions(file).map_err(|why| reject(format!("refused: {why}")))?;
    }
    let dir = shadow_dir();
    std::fs::create_dir_all(&dir).map_err(|e| {
        reject(format!(
            "cannot create shadow folder {}: {e}",
            dir.display()
        ))
    })?;
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shadow = dir.join(format!("{generation}-{name}"));
    std::fs::copy(file, &shadow)
        .map_err(|e| reject(format!("cannot copy to {}: {e}", shadow.display())))?;
    // The digest of the copy that is loaded, not of a file that may change meanwhile.
    let sha256 = match std::fs::read(&shadow) {
        Ok(bytes) => crate::digest::sha256_hex(&bytes),
        Err(e) => {
            let _ = std::fs::remove_file(&shadow);
            return Err(reject(format!("cannot read {}: {e}", shadow.display())));
        }
    };
    let loaded = lib_header_from_path(&shadow)
        .and_then(|header| header.init_root_module::<PluginModuleRef>());
    // The mapping stays valid after the path is gone; the folder goes when empty.
    let _ = std::fs::remove_file(&shadow);
    let _ = std::fs::remove_dir(&dir);
    let module = loaded.map_err(|e| reject(summarise(&e)))?;
    let manifest_json = (module.manifest())();
    let manifest: Manifest = serde_json::from_str(manifest_json.as_str())
        .map_err(|e| reject(format!("its manifest is unreadable: {e}")))?;
    check_handshake(&manifest).map_err(reject)?;
    Ok(PluginLibrary {
        file: file.to_path_buf(),
        sha256,
        manifest,
        module,
    })
}

/// The version and capabilities handshake on top of abi_stable's layout check.
fn check_handshake(manifest: &Manifest) -> Result<(), String> {
    let major = |v: &str| v.split('.').next().and_then(|m| m.parse::<u64>().ok());
    match (major(&manifest.api_version), major(API_VERSION)) {
        (Some(found), Some(expected)) if found == expected => {}
        _ => {
            return Err(format!(
                "built against murmur-plugin-api {}, this host speaks {API_VERSION}",
                manifest.api_version
            ))
        }
    }
    let missing: Vec<&str> = manifest
        .requires
        .iter()
        .map(String::as_str)
        .filter(|r| !HOST_CAPABILITIES.contains(r))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "requires host capabilities this host lacks: {} (it offers {})",
            missing.join(", "),
            HOST_CAPABILITIES.join(", ")
        ));
    }
    Ok(())
}

/// abi_stable's errors run to hundreds of lines; keep what a user can act on.
pub fn summarise(e: &LibraryError) -> String {
    match e {
        LibraryError::OpenError { err, .. } => {
            let text = err.to_string();
            let detail = text.rsplit(": ").next().unwrap_or(&text).trim().to_string();
            format!("not a loadable shared library ({detail})")
        }
        LibraryError::GetSymbolError { .. } => {
            "not a Murmur plugin: it exports no abi_stable root module (build it with murmur_plugin_api::export_plugin!)"
                .to_string()
        }
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "incompatible plugin ABI: built against ABI {actual_version}, this host expects ABI {expected_version}; rebuild it against this murmur-plugin-api"
        ),
        LibraryError::AbiInstability(report) => {
            let report = report.to_string();
            let first = report.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            format!("incompatible plugin interface layout (rebuild it against this murmur-plugin-api): {first}")
        }
        LibraryError::InvalidAbiHeader(_) => "built with an incompatible abi_stable version".to_string(),
        LibraryError::InvalidCAbi { .. } => "built for an incompatible C ABI".to_string(),
        LibraryError::ParseVersionError(e) => format!("unreadable version number: {e}"),
        LibraryError::RootModule { err, .. } => format!("its root module failed to initialise: {err}"),
        LibraryError::Many(errors) => errors.iter().map(summarise).collect::<Vec<_>>().join("; "),
    }
}

/// Libraries in a folder.
#[derive(Debug, Default)]
pub struct Scan {
    /// Loaded libraries, in file-name order.
    pub libraries: Vec<Arc<PluginLibrary>>,
    /// Files that were not loaded.
    pub rejected: Vec<Rejection>,
}

/// Why a folder was not scanned.
#[derive(Debug, thiserror::Error)]
pub enum ScanDirError {
    /// It cannot be read.
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    /// Other users could put code in it ([`check_permissions`]).
    #[error("refused: {0}")]
    Insecure(String),
}

/// Loads every `*.so` in `dir` (not recursive), in file-name order. A bad file is rejected
/// and the others load. A library that exports a name an earlier one already exports is
/// rejected too, so names stay unambiguous. Unless `allow_insecure`, a folder or file that
/// [`check_permissions`] refuses is not loaded. A file with the same path and the same bytes
/// as one of `previous` (an earlier scan) is not loaded again: that library is kept.
pub fn scan_dir(
    dir: &Path,
    allow_insecure: bool,
    previous: &[Arc<PluginLibrary>],
) -> Result<Scan, ScanDirError> {
    let entries = std::fs::read_dir(dir)?;
    if !allow_insecure {
        check_permissions(dir).map_err(ScanDirError::Insecure)?;
    }
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "so"))
        .collect();
    files.sort();
    let mut scan = Scan::default();
    for file in files {
        let kept = previous.iter().find(|l| l.file == file).filter(|l| {
            (allow_insecure || check_permissions(&file).is_ok())
                && std::fs::read(&file)
                    .is_ok_and(|bytes| crate::digest::sha256_hex(&bytes) == l.sha256)
        });
        let loaded = match kept {
            Some(lib) => Ok(lib.clone()),
            None => load_file(&file, !allow_insecure).map(Arc::new),
        };
        match loaded {
            Ok(lib) => match clash(&scan.libraries, &lib) {
                Some(reason) => scan.rejected.push(Rejection { file, reason }),
                None => {
                    tracing::debug!(file = %file.display(), plugin = %lib.manifest.name, "plugin loaded");
                    scan.libraries.push(lib);
                }
            },
            Err(r) => {
                tracing::debug!(file = %r.file.display(), "plugin rejected: {}", r.reason);
                scan.rejected.push(r);
            }
        }
    }
    Ok(scan)
}

fn clash(loaded: &[Arc<PluginLibrary>], new: &PluginLibrary) -> Option<String> {
    for lib in loaded {
        for a in &new.manifest.analyzers {
            if lib.manifest.analyzers.iter().any(|b| b.name == a.name) {
                return Some(format!(
                    "exports analyzer `{}`, already exported by {}",
                    a.name,
                    lib.file.display()
                ));
            }
        }
        for t in &new.manifest.tools {
            if lib.manifest.tools.iter().any(|b| b.name == t.name) {
                return Some(format!(
                    "exports tool `{}`, already exported by {}",
                    t.name,
                    lib.file.display()
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(api: &str, requires: &[&str]) -> Manifest {
        Manifest {
            api_version: api.into(),
            name: "p".into(),
            version: "1".into(),
            requires: requires.iter().map(|s| s.to_string()).collect(),
            analyzers: vec![],
            tools: vec![],
        }
    }

    #[test]
    fn handshake_refuses_other_api_majors_and_missing_capabilities() {
        assert!(check_handshake(&manifest(API_VERSION, &["log", "state"])).is_ok());
        let e = check_handshake(&manifest("7.0.0", &[])).expect_err("other major");
        assert!(e.contains("built against murmur-plugin-api 7.0.0"), "{e}");
        let e = check_handshake(&manifest(API_VERSION, &["telepathy"])).expect_err("capability");
        assert!(e.contains("lacks: telepathy"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_library_is_rejected_with_a_short_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("garbage.so");
        std::fs::write(&file, "not an ELF file").expect("write");
        let r = load_file(&file, true).expect_err("garbage");
        assert!(
            r.reason.starts_with("not a loadable shared library"),
            "{}",
            r.reason
        );
        assert_eq!(r.reason.lines().count(), 1);
    }

    #[test]
    fn folders_and_files_that_others_can_write_are_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("lib.so");
        std::fs::write(&file, "x").expect("write");
        let chmod = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
        };
        chmod(dir.path(), 0o755);
        chmod(&file, 0o644);
        assert_eq!(check_permissions(dir.path()), Ok(()));
        assert_eq!(check_permissions(&file), Ok(()));

        chmod(&file, 0o664);
        let e = check_permissions(&file).expect_err("group-writable");
        assert!(e.contains("can be written by its group (mode 0664)"), "{e}");
        assert!(
            e.contains(&format!("`chmod go-w {}`", file.display())),
            "{e}"
        );
        assert!(e.contains("allow_insecure_plugins = true"), "{e}");
        let r = load_file(&file, true).expect_err("refused");
        assert!(r.reason.starts_with("refused: "), "{}", r.reason);
        let r = load_file(&file, false).expect_err("not a library, but not refused for its mode");
        assert!(r.reason.starts_with("not a loadable"), "{}", r.reason);

        chmod(dir.path(), 0o777);
        let e = check_permissions(dir.path()).expect_err("world-writable");
        assert!(e.contains("every user"), "{e}");
        match scan_dir(dir.path(), false, &[]) {
            Err(ScanDirError::Insecure(why)) => assert!(why.contains("mode 0777"), "{why}"),
            other => panic!("{other:?}"),
        }
        let scan = scan_dir(dir.path(), true, &[]).expect("allowed");
        assert_eq!(
            scan.rejected.len(),
            1,
            "loaded and rejected as not a library"
        );
        chmod(dir.path(), 0o700);
    }
}
