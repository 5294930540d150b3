//! `elf`: arbitrary bytes through every check the loader runs on a library before any
//! `dlopen`: the structure and dynamic section (`abkit::internals::elf::validate`), then the
//! dependency policy (`abkit::internals::check_library`: allowlist, no RPATH/RUNPATH). Any answer
//! is fine; a panic, hang or out-of-bounds read is not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match abkit::internals::elf::validate(data) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(info) => {
            let policy = abkit::internals::elf::check_dependencies(
                &info,
                abkit::internals::elf::DEFAULT_ALLOWED_LIBRARIES,
            );
            let whole = abkit::internals::check_library(
                data,
                abkit::internals::elf::DEFAULT_ALLOWED_LIBRARIES,
            );
            // The loader's entry point agrees with its two steps.
            assert_eq!(policy.is_ok(), whole.is_ok());
        }
    }
});
