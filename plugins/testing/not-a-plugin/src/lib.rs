//! Broken fixture: a valid shared library that is not an abi_stable library and not a
//! Murmur plugin. The host must refuse it with a short reason.

/// An ordinary C function, so the library has an export.
#[no_mangle]
pub extern "C" fn murmur_fixture_not_a_plugin() -> i32 {
    42
}
