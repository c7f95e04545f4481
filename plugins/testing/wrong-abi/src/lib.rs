//! Broken fixture: a plugin built against an incompatible plugin ABI. It exports a root
//! module with the same name as Murmur's but ABI version 2.0.0 and an extra field, as a
//! plugin built against a future, incompatible `murmur-plugin-api` would. The host must
//! refuse it with the expected and found versions.

// abi_stable's derive expands to impl blocks that trip `non_local_definitions`; sound.
#![allow(non_local_definitions)]

use abi_stable::{
    declare_root_module_statics, export_root_module,
    library::RootModule,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::{RStr, RString},
    StableAbi,
};

/// A root module laid out differently from Murmur's.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = FutureModuleRef)))]
#[sabi(missing_field(panic))]
pub struct FutureModule {
    pub manifest: extern "C" fn() -> RString,
    #[sabi(last_prefix_field)]
    pub describe: extern "C" fn(RStr<'_>) -> RString,
}

impl RootModule for FutureModuleRef {
    declare_root_module_statics! {FutureModuleRef}
    const BASE_NAME: &'static str = "murmur_plugin";
    const NAME: &'static str = "murmur_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("2.0.0");
}

extern "C" fn manifest() -> RString {
    "{}".into()
}

extern "C" fn describe(s: RStr<'_>) -> RString {
    s.as_str().into()
}

/// The root module.
#[export_root_module]
pub fn root() -> FutureModuleRef {
    FutureModule { manifest, describe }.leak_into_prefix()
}
