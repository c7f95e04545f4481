//! The plugin side of the boundary: adapters from [`Analyzer`]/[`Tool`] to the frozen ABI,
//! and the pieces [`export_plugin!`](crate::export_plugin) assembles into a root module.
//!
//! Every entry point catches panics here, inside the plugin: an unwinding panic that
//! reached the `extern "C"` boundary would abort the host.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RErr, ROk, RResult, RStr, RString, RVec},
};

use crate::ffi::{
    ErrorCode, FfiAnalyzer, FfiAnalyzerBox, FfiAnalyzer_TO, FfiContext, FfiError, FfiHostRef,
    FfiInjection, FfiTool, FfiToolBox, FfiTool_TO, PluginModule, PluginModuleRef,
};
use crate::{
    Analyzer, AnalyzerInfo, Config, Context, Error, ErrorKind, Host, Injection, Manifest, Result,
    Tool, ToolInfo, API_VERSION,
};

/// How one analyzer type is exported. Built by [`AnalyzerExport::of`].
#[derive(Debug, Clone, Copy)]
pub struct AnalyzerExport {
    /// Its manifest entry.
    pub info: fn() -> AnalyzerInfo,
    create: fn(Config) -> Result<FfiAnalyzerBox>,
}

impl AnalyzerExport {
    /// The export of analyzer type `A`.
    pub const fn of<A: Analyzer>() -> Self {
        AnalyzerExport {
            info: analyzer_info::<A>,
            create: create_analyzer::<A>,
        }
    }
}

/// How one tool type is exported. Built by [`ToolExport::of`].
#[derive(Debug, Clone, Copy)]
pub struct ToolExport {
    /// Its manifest entry.
    pub info: fn() -> ToolInfo,
    create: fn(Config) -> Result<FfiToolBox>,
}

impl ToolExport {
    /// The export of tool type `T`.
    pub const fn of<T: Tool>() -> Self {
        ToolExport {
            info: tool_info::<T>,
            create: create_tool::<T>,
        }
    }
}

/// Everything a plugin library exports; [`export_plugin!`](crate::export_plugin) makes one
/// static of this type.
#[derive(Debug)]
pub struct PluginSpec {
    /// The plugin's name.
    pub name: &'static str,
    /// The plugin's version.
    pub version: &'static str,
    /// Host capabilities it needs.
    pub requires: &'static [&'static str],
    /// Its analyzers.
    pub analyzers: &'static [AnalyzerExport],
    /// Its tools.
    pub tools: &'static [ToolExport],
}

impl PluginSpec {
    /// The manifest of this plugin.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            api_version: API_VERSION.to_string(),
            name: self.name.to_string(),
            version: self.version.to_string(),
            requires: self.requires.iter().map(|s| s.to_string()).collect(),
            analyzers: self.analyzers.iter().map(|a| (a.info)()).collect(),
            tools: self.tools.iter().map(|t| (t.info)()).collect(),
        }
    }

    /// Entry point behind [`PluginModule::manifest`].
    pub fn manifest_json(&self) -> RString {
        guard(|| serde_json::to_string(&self.manifest()).map_err(Error::msg))
            .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.message()))
            .into()
    }

    /// Entry point behind [`PluginModule::new_analyzer`].
    pub fn new_analyzer(
        &self,
        name: RStr<'_>,
        config_json: RStr<'_>,
    ) -> RResult<FfiAnalyzerBox, FfiError> {
        let name = name.as_str();
        guard(|| {
            let export = self
                .analyzers
                .iter()
                .find(|a| (a.info)().name == name)
                .ok_or_else(|| unknown(self, "analyzer", name))?;
            (export.create)(parse_config(config_json.as_str())?)
        })
        .map_err(to_ffi_error)
        .into()
    }

    /// Entry point behind [`PluginModule::new_tool`].
    pub fn new_tool(&self, name: RStr<'_>, config_json: RStr<'_>) -> RResult<FfiToolBox, FfiError> {
        let name = name.as_str();
        guard(|| {
            let export = self
                .tools
                .iter()
                .find(|t| (t.info)().name == name)
                .ok_or_else(|| unknown(self, "tool", name))?;
            (export.create)(parse_config(config_json.as_str())?)
        })
        .map_err(to_ffi_error)
        .into()
    }
}

/// Builds the root module from the three entry points the macro generates.
pub fn root_module(
    manifest: extern "C" fn() -> RString,
    new_analyzer: extern "C" fn(RStr<'_>, RStr<'_>) -> RResult<FfiAnalyzerBox, FfiError>,
    new_tool: extern "C" fn(RStr<'_>, RStr<'_>) -> RResult<FfiToolBox, FfiError>,
) -> PluginModuleRef {
    PluginModule {
        manifest,
        new_analyzer,
        new_tool,
    }
    .leak_into_prefix()
}

fn unknown(spec: &PluginSpec, what: &str, name: &str) -> Error {
    Error::new(
        ErrorKind::Failed,
        format!("plugin `{}` exports no {what} named `{name}`", spec.name),
    )
}

fn parse_config(json: &str) -> Result<Config> {
    if json.trim().is_empty() {
        return Ok(Config::default());
    }
    serde_json::from_str(json)
        .map(Config::new)
        .map_err(|e| Error::config(format!("config is not valid JSON: {e}")))
}

thread_local! {
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replaces this library's panic hook (each plugin has its own std) with one that only
/// records where a panic happened: the panic is reported to the host as an error value,
/// so printing it to the host's stderr as well would be noise. Installed once; it keeps
/// the previous hook for panics outside a guarded call.
fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let guarded = PANIC_LOCATION.with(|l| {
                let mut l = l.borrow_mut();
                if l.as_deref() == Some("") {
                    *l = Some(
                        info.location()
                            .map(|loc| loc.to_string())
                            .unwrap_or_default(),
                    );
                    true
                } else {
                    false
                }
            });
            if !guarded {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into an [`ErrorKind::Panicked`] error that says where.
fn guard<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    install_quiet_hook();
    let outer = PANIC_LOCATION.with(|l| l.borrow_mut().replace(String::new()));
    // Unwind safety: on a panic the partially updated state of `f` is dropped with the
    // error; analyzers are `Sync` and must keep their shared state consistent anyway.
    let result = catch_unwind(AssertUnwindSafe(f));
    let location = PANIC_LOCATION.with(|l| std::mem::replace(&mut *l.borrow_mut(), outer));
    match result {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_string());
            let at = location
                .filter(|l| !l.is_empty())
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            Err(Error::new(
                ErrorKind::Panicked,
                format!("panicked{at}: {what}"),
            ))
        }
    }
}

fn to_ffi_error(e: Error) -> FfiError {
    let code = match e.kind() {
        ErrorKind::Failed => ErrorCode::Failed,
        ErrorKind::InvalidConfig => ErrorCode::InvalidConfig,
        ErrorKind::Cancelled => ErrorCode::Cancelled,
        ErrorKind::Panicked => ErrorCode::Panicked,
        ErrorKind::Unsupported => ErrorCode::Unsupported,
    };
    FfiError {
        code: code as u32,
        message: e.message().into(),
    }
}

fn analyzer_info<A: Analyzer>() -> AnalyzerInfo {
    AnalyzerInfo {
        name: A::NAME.to_string(),
        description: A::DESCRIPTION.to_string(),
        hooks: A::HOOKS.to_vec(),
    }
}

fn tool_info<T: Tool>() -> ToolInfo {
    ToolInfo {
        name: T::NAME.to_string(),
        description: T::DESCRIPTION.to_string(),
        parameters: T::parameters(),
    }
}

fn create_analyzer<A: Analyzer>(config: Config) -> Result<FfiAnalyzerBox> {
    let analyzer = A::new(config)?;
    Ok(FfiAnalyzer_TO::from_value(
        AnalyzerAdapter(analyzer),
        TD_Opaque,
    ))
}

fn create_tool<T: Tool>(config: Config) -> Result<FfiToolBox> {
    let tool = T::new(config)?;
    Ok(FfiTool_TO::from_value(ToolAdapter(tool), TD_Opaque))
}

struct AnalyzerAdapter<A>(A);

impl<A: Analyzer> FfiAnalyzer for AnalyzerAdapter<A> {
    fn analyze(
        &self,
        ctx: &FfiContext<'_>,
        host: FfiHostRef<'_>,
    ) -> RResult<RVec<FfiInjection>, FfiError> {
        let result = guard(|| {
            let ctx = Context::from_ffi(ctx);
            let host = Host::from_ffi(host);
            self.0.analyze(&ctx, &host)
        });
        match result {
            Ok(injections) => ROk(injections.into_iter().map(injection_to_ffi).collect()),
            Err(e) => RErr(to_ffi_error(e)),
        }
    }
}

struct ToolAdapter<T>(T);

impl<T: Tool> FfiTool for ToolAdapter<T> {
    fn call(&self, args_json: RStr<'_>, host: FfiHostRef<'_>) -> RResult<RString, FfiError> {
        guard(|| {
            let args: serde_json::Value = if args_json.as_str().trim().is_empty() {
                serde_json::Value::Object(Default::default())
            } else {
                serde_json::from_str(args_json.as_str())
                    .map_err(|e| Error::msg(format!("arguments are not valid JSON: {e}")))?
            };
            self.0.call(args, &Host::from_ffi(host))
        })
        .map(RString::from)
        .map_err(to_ffi_error)
        .into()
    }
}

fn injection_to_ffi(i: Injection) -> FfiInjection {
    FfiInjection {
        role: i.role.code(),
        content: i.content.into(),
        key: i.key.map(RString::from).into(),
        details_json: i.details.map(|d| d.to_string()).unwrap_or_default().into(),
    }
}

/// Exports analyzers and tools from a plugin library (a crate with
/// `crate-type = ["cdylib", "rlib"]`).
///
/// ```ignore
/// murmur_plugin_api::export_plugin! {
///     name: "my-plugin",
///     version: env!("CARGO_PKG_VERSION"),
///     analyzers: [MyAnalyzer],
///     tools: [MyTool],
/// }
/// ```
///
/// `requires: ["state"]` may follow `version` to name host capabilities the plugin needs.
/// Use it once per library.
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:expr,
        version: $version:expr,
        $(requires: [$($req:expr),* $(,)?],)?
        analyzers: [$($analyzer:ty),* $(,)?],
        tools: [$($tool:ty),* $(,)?] $(,)?
    ) => {
        /// The exports of this plugin library.
        pub static MURMUR_PLUGIN: $crate::export::PluginSpec = $crate::export::PluginSpec {
            name: $name,
            version: $version,
            requires: &[$($($req),*)?],
            analyzers: &[$($crate::export::AnalyzerExport::of::<$analyzer>()),*],
            tools: &[$($crate::export::ToolExport::of::<$tool>()),*],
        };

        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        #[no_mangle]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::abi_stable::library::LibHeader = {
            use $crate::__private::abi_stable::std_types::{RResult, RStr, RString};
            use $crate::ffi::{FfiAnalyzerBox, FfiError, FfiToolBox, PluginModuleRef};

            extern "C" fn manifest() -> RString {
                MURMUR_PLUGIN.manifest_json()
            }
            extern "C" fn new_analyzer(name: RStr<'_>, config: RStr<'_>) -> RResult<FfiAnalyzerBox, FfiError> {
                MURMUR_PLUGIN.new_analyzer(name, config)
            }
            extern "C" fn new_tool(name: RStr<'_>, config: RStr<'_>) -> RResult<FfiToolBox, FfiError> {
                MURMUR_PLUGIN.new_tool(name, config)
            }
            fn root() -> PluginModuleRef {
                $crate::export::root_module(manifest, new_analyzer, new_tool)
            }
            extern "C" fn erased_root() -> $crate::__private::abi_stable::library::RootModuleResult {
                $crate::__private::abi_stable::library::__call_root_module_loader(root)
            }
            // SAFETY: `erased_root` returns the root module of type `PluginModuleRef`, the
            // type the header is declared with; this is what `#[export_root_module]` expands to.
            unsafe {
                $crate::__private::abi_stable::library::LibHeader::from_constructor::<PluginModuleRef>(
                    erased_root,
                    $crate::__private::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}
