//! The frozen ABI between the Murmur host and a plugin library.
//!
//! Plugin authors never use this module: the [`export_plugin!`](crate::export_plugin) macro
//! builds the root module and the adapters in [`crate::export`] translate between these types
//! and the plain Rust types of the authoring API. The host uses it to load libraries.
//!
//! # Evolution rules
//!
//! abi_stable's compatibility check is one-way: a host built against an interface with more
//! prefix fields rejects libraries built against an older one. Every type in this module is
//! therefore **frozen**: no field, variant or method is ever added, removed or reordered.
//! New capabilities travel through the places built to carry them:
//!
//! - [`PluginModule::manifest`] returns JSON ([`crate::Manifest`]) that gains optional fields;
//! - [`FfiContext::extensions_json`] carries new per-run facts as JSON;
//! - [`FfiHostServices::call`] reaches host services by name with JSON in and out
//!   (`complete`, `search`, and whatever comes later), advertised in the capabilities list.
//!
//! A change that cannot follow these rules is a new ABI: bump [`ABI_VERSION`], which makes
//! abi_stable refuse every older library with a version error instead of undefined behaviour.

// The abi_stable derive and attribute macros expand to `impl` blocks that rustc's
// `non_local_definitions` lint flags; the expansion is sound (abi_stable issue tracker,
// accepted here because the crate has had no release since 2023).
#![allow(non_local_definitions)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

/// Version of the binary interface. abi_stable compares it at load time: a different major
/// (or, below 1.0, a different minor) refuses the library with a version error.
pub const ABI_VERSION: &str = "1.0.0";

/// The name abi_stable gives to the library header static of every abi_stable library.
/// [`export_plugin!`](crate::export_plugin) exports it by this name; a test checks that it
/// matches `abi_stable::library::ROOT_MODULE_LOADER_NAME`.
pub const ROOT_MODULE_LOADER_NAME: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// The root module every Murmur plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Returns the plugin's [`crate::Manifest`] as JSON: API version, capabilities it
    /// requires, the analyzers and tools it exports.
    pub manifest: extern "C" fn() -> RString,
    /// Creates an analyzer instance by export name, with its `[analyzer.config]` table as
    /// JSON.
    pub new_analyzer:
        extern "C" fn(name: RStr<'_>, config_json: RStr<'_>) -> RResult<FfiAnalyzerBox, FfiError>,
    /// Creates a tool instance by export name, with its `[tool.config]` table as JSON.
    ///
    /// This is the last prefix field and stays so: the module is frozen (see module docs).
    #[sabi(last_prefix_field)]
    pub new_tool:
        extern "C" fn(name: RStr<'_>, config_json: RStr<'_>) -> RResult<FfiToolBox, FfiError>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "murmur_plugin";
    const NAME: &'static str = "murmur_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(ABI_VERSION);
}

/// An error crossing the boundary: a numeric [`ErrorCode`] and a message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiError {
    /// One of the [`ErrorCode`] values; unknown codes are read as [`ErrorCode::Failed`].
    pub code: u32,
    /// What went wrong, for people.
    pub message: RString,
}

/// Error codes carried by [`FfiError::code`]. New codes may appear; readers map unknown
/// ones to [`ErrorCode::Failed`].
///
/// ```
/// use murmur_plugin_api::ffi::ErrorCode;
///
/// assert_eq!(ErrorCode::from_u32(ErrorCode::Cancelled as u32), ErrorCode::Cancelled);
/// assert_eq!(ErrorCode::from_u32(99), ErrorCode::Failed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// The analyzer or tool reported a failure.
    Failed = 1,
    /// The plugin panicked; the panic was caught inside the plugin.
    Panicked = 2,
    /// The run stopped because the host asked it to.
    Cancelled = 3,
    /// The configuration table was rejected.
    InvalidConfig = 4,
    /// No analyzer or tool of that name is exported by this plugin.
    UnknownName = 5,
    /// A host service was asked for something it does not offer.
    Unsupported = 6,
}

impl ErrorCode {
    /// Reads a code from the wire; unknown values are `Failed`.
    pub fn from_u32(code: u32) -> Self {
        match code {
            2 => Self::Panicked,
            3 => Self::Cancelled,
            4 => Self::InvalidConfig,
            5 => Self::UnknownName,
            6 => Self::Unsupported,
            _ => Self::Failed,
        }
    }
}

/// A point in time as [`FfiContext::deadline_unix_ms`] carries it: milliseconds since the Unix
/// epoch (0 before it, `u64::MAX` past the representable range).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use murmur_plugin_api::ffi::unix_ms;
///
/// assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1_500)), 1_500);
/// assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
/// ```
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Message roles on the wire: 0 system, 1 user, 2 assistant, 3 tool.
pub type FfiRole = u8;
/// Message origins on the wire: 0 user, 1 assistant, 2 tool, 3 injection, 4 summary.
pub type FfiOrigin = u8;
/// Hook codes on the wire: 0 chat_start, 1 turn_start, 2 step, 3 turn_complete, 4 chat_end.
pub type FfiHook = u8;

/// One model message as analyzers see it; borrowed from the host for one call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiMessage<'a> {
    /// [`FfiRole`].
    pub role: FfiRole,
    /// [`FfiOrigin`].
    pub origin: FfiOrigin,
    /// The text content.
    pub content: RStr<'a>,
    /// For injections the analyzer's name, for tool results the tool's name, else empty.
    pub name: RStr<'a>,
    /// Tool calls of an assistant message as a JSON array, or empty.
    pub tool_calls_json: RStr<'a>,
}

/// The per-run context of an analyzer call (SPEC S27), borrowed from the host.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FfiContext<'a> {
    /// Session id.
    pub session_id: RStr<'a>,
    /// The turn this run is about, from 1.
    pub turn: u64,
    /// The step within the turn, from 1 (0 for hooks outside a step).
    pub step: u32,
    /// [`FfiHook`].
    pub hook: FfiHook,
    /// The model messages so far, read-only.
    pub messages: RSlice<'a, FfiMessage<'a>>,
    /// The latest user message, or empty.
    pub latest_user: RStr<'a>,
    /// The latest assistant reply, or empty.
    pub latest_reply: RStr<'a>,
    /// The analyzer's `[analyzer.config]` table as JSON.
    pub config_json: RStr<'a>,
    /// Wall-clock deadline of this run in milliseconds since the Unix epoch.
    pub deadline_unix_ms: u64,
    /// Further facts as a JSON object, for fields added after the ABI froze.
    pub extensions_json: RStr<'a>,
}

/// One injection returned by an analyzer.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiInjection {
    /// [`FfiRole`].
    pub role: FfiRole,
    /// The message text.
    pub content: RString,
    /// Supersede key (SPEC S15), or none.
    pub key: ROption<RString>,
    /// Free-form details as a JSON object (may be empty).
    pub details_json: RString,
}

/// Services the host offers to plugin code during a call. Blocking from the plugin's side.
#[sabi_trait]
pub trait FfiHostServices: Sync {
    /// Writes a log line attributed to the calling analyzer. Levels: 0 error, 1 warn,
    /// 2 info, 3 debug, 4 trace.
    fn log(&self, level: u8, message: RStr<'_>);

    /// Reads this analyzer's state for this session.
    fn state_get(&self, key: RStr<'_>) -> ROption<RString>;

    /// Writes (or with `None`, removes) this analyzer's state for this session.
    fn state_put(&self, key: RStr<'_>, value: ROption<RStr<'_>>);

    /// Whether the host asked this run to stop (hard timeout, shutdown).
    fn cancelled(&self) -> bool;

    /// A named host service with a JSON request and a JSON response. The host lists the
    /// names it serves in `capabilities`.
    fn call(&self, service: RStr<'_>, request_json: RStr<'_>) -> RResult<RString, FfiError>;

    /// The host's capabilities as a JSON array of strings.
    #[sabi(last_prefix_field)]
    fn capabilities(&self) -> RString;
}

/// A borrowed host-services object, valid for one call.
pub type FfiHostRef<'a> = FfiHostServices_TO<'a, abi_stable::sabi_types::RRef<'a, ()>>;

/// An analyzer instance living in the plugin.
#[sabi_trait]
pub trait FfiAnalyzer: Send + Sync {
    /// Runs the analyzer once. Must not unwind.
    #[sabi(last_prefix_field)]
    fn analyze(
        &self,
        ctx: &FfiContext<'_>,
        host: FfiHostRef<'_>,
    ) -> RResult<RVec<FfiInjection>, FfiError>;
}

/// An owned analyzer instance.
pub type FfiAnalyzerBox = FfiAnalyzer_TO<'static, RBox<()>>;

/// A tool instance living in the plugin.
#[sabi_trait]
pub trait FfiTool: Send + Sync {
    /// Calls the tool with its arguments as JSON. Must not unwind.
    #[sabi(last_prefix_field)]
    fn call(&self, args_json: RStr<'_>, host: FfiHostRef<'_>) -> RResult<RString, FfiError>;
}

/// An owned tool instance.
pub type FfiToolBox = FfiTool_TO<'static, RBox<()>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_module_loader_name_matches_abi_stable() {
        assert_eq!(
            ROOT_MODULE_LOADER_NAME,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }

    #[test]
    fn unknown_error_codes_read_as_failed() {
        assert_eq!(ErrorCode::from_u32(99), ErrorCode::Failed);
        assert_eq!(ErrorCode::from_u32(2), ErrorCode::Panicked);
    }
}
