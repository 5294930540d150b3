//! `elf`: arbitrary bytes through every check the loader runs on a library before any
//! `dlopen`: the structure and dynamic section (`abkit::loader::elf::validate`), then the
//! dependency policy (`abkit::loader::check_library`: allowlist, no RPATH/RUNPATH). Any answer
//! is fine; a panic, hang or out-of-bounds read is not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match abkit::loader::elf::validate(data) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(info) => {
            let policy = abkit::loader::elf::check_dependencies(
                &info,
                abkit::loader::elf::DEFAULT_ALLOWED_LIBRARIES,
            );
            let whole =
                abkit::loader::check_library(data, abkit::loader::elf::DEFAULT_ALLOWED_LIBRARIES);
            // The loader's entry point agrees with its two steps.
            assert_eq!(policy.is_ok(), whole.is_ok());
        }
    }
});
