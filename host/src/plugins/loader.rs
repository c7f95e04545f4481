//! Opening plugin libraries: scan a folder, shadow-copy each `.so`, load it through
//! abi_stable, check versions and capabilities, and summarise refusals in one line.
//!
//! Libraries are never unloaded (abi_stable does not support it). Each file is copied to a
//! unique shadow path before loading, so the original can be replaced on disk without
//! crashing the host, and loading the same path twice yields fresh code, not the cached
//! first mapping. The shadow copy is deleted once mapped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use abi_stable::library::{lib_header_from_path, LibraryError};
use murmur_plugin_api::ffi::PluginModuleRef;
use murmur_plugin_api::{Manifest, API_VERSION};

use crate::services::HOST_CAPABILITIES;

/// A loaded, checked plugin library.
pub struct PluginLibrary {
    /// The file it was loaded from (not the shadow copy).
    pub file: PathBuf,
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

/// Loads one library file.
pub fn load_file(file: &Path) -> Result<PluginLibrary, Rejection> {
    let reject = |reason: String| Rejection {
        file: file.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(file).map_err(|e| reject(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(reject("not a regular file".into()));
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
    pub libraries: Vec<PluginLibrary>,
    /// Files that were not loaded.
    pub rejected: Vec<Rejection>,
}

/// Loads every `*.so` in `dir` (not recursive), in file-name order. A bad file is rejected
/// and the others load. A library that exports a name an earlier one already exports is
/// rejected too, so names stay unambiguous.
pub fn scan_dir(dir: &Path) -> Result<Scan, std::io::Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "so"))
        .collect();
    files.sort();
    let mut scan = Scan::default();
    for file in files {
        match load_file(&file) {
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

fn clash(loaded: &[PluginLibrary], new: &PluginLibrary) -> Option<String> {
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
        let r = load_file(&file).expect_err("garbage");
        assert!(
            r.reason.starts_with("not a loadable shared library"),
            "{}",
            r.reason
        );
        assert_eq!(r.reason.lines().count(), 1);
    }
}
