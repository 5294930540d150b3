//! The author-facing side: [`StrategyImpl`], the panic-catching [`Guarded`] wrapper and the
//! [`export_strategy_plugin!`](crate::export_strategy_plugin) macro built on them.
//!
//! Everything that does real work is an ordinary function here, so the macro stays a thin
//! list of `extern "C"` shims and unit tests can call the same code the host calls.

use crate::{
    BuiltStrategy, Decision, Declaration, ExperimentSpec, Request, Strategy, StrategyBox,
    Strategy_TO,
};
use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RErr, ROk, RResult, RStr, RString},
};
use std::any::Any;
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a plugin author implements: a plain Rust trait, no ABI types beyond the request.
///
/// One value serves one experiment (it is built from that experiment's [`ExperimentSpec`],
/// so weights, coverage and salt can be precomputed into it) and is called from many
/// threads at once. `assign` should not allocate on its success path (the SDK's assign
/// path is allocation-free); only an error may build a message.
///
/// A panic in `assign` is caught by [`Guarded`] and answered with [`Decision::Error`]; the
/// same value is called again afterwards, so interior state (if any) must stay usable
/// after a panic.
pub trait StrategyImpl: Send + Sync + 'static {
    /// Decides one request. Any answer is checked by the SDK (an out-of-range variant or an
    /// error gets the built-in answer for that call).
    fn assign(&self, request: &Request<'_>) -> Decision;

    /// What it reads and randomises by; called once, right after it is built. The default:
    /// by unit id, no attributes ([`Declaration::unit_id`]).
    fn declaration(&self) -> Declaration {
        Declaration::unit_id()
    }
}

/// A [`StrategyImpl`] made safe to call across the boundary: it implements [`Strategy`]
/// and catches every panic of `assign` (and of the inner value's `Drop`) inside the plugin.
///
/// [`export_strategy_plugin!`](crate::export_strategy_plugin) wraps every strategy in it;
/// tests can do the same with [`Guarded::into_box`] to call through the type-erased box.
pub struct Guarded<T: StrategyImpl> {
    /// Always `Some` until dropped: `Drop` takes it out to drop it under `catch_unwind`.
    inner: Option<T>,
}

impl<T: StrategyImpl> Guarded<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Guarded { inner: Some(inner) }
    }

    /// Boxes and type-erases this wrapper as the host sees it
    /// (`Strategy_TO::from_value(self, TD_Opaque)`).
    pub fn into_box(self) -> StrategyBox {
        Strategy_TO::from_value(self, TD_Opaque)
    }
}

impl<T: StrategyImpl> Strategy for Guarded<T> {
    fn assign(&self, request: &Request<'_>) -> Decision {
        let Some(inner) = self.inner.as_ref() else {
            return Decision::Error(RString::from("strategy called after it was dropped"));
        };
        // AssertUnwindSafe: a strategy that panicked is called again; `StrategyImpl`
        // documents that its state must tolerate that.
        match catch_unwind(AssertUnwindSafe(|| inner.assign(request))) {
            Ok(decision) => decision,
            Err(payload) => Decision::Error(panic_error("strategy panicked", payload)),
        }
    }
}

impl<T: StrategyImpl> Drop for Guarded<T> {
    fn drop(&mut self) {
        let inner = self.inner.take();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(inner))) {
            forget_payload(payload);
        }
    }
}

/// Builds a strategy with `new(spec)` for the root module's `new_strategy`.
///
/// `Ok` -> the strategy wrapped in [`Guarded`] and boxed, with its declaration;
/// `Err(e)` -> `RErr(e.to_string())` (the plugin's message, shown by the SDK for that
/// experiment); a panic in `new` or in `declaration` ->
/// `RErr("strategy constructor panicked: <message>")`.
pub fn new_guarded_strategy<T, E, F>(
    spec: &ExperimentSpec<'_>,
    new: F,
) -> RResult<BuiltStrategy, RString>
where
    T: StrategyImpl,
    E: Display,
    F: FnOnce(&ExperimentSpec<'_>) -> Result<T, E>,
{
    let built = catch_unwind(AssertUnwindSafe(|| {
        new(spec)
            .map(|strategy| {
                let declaration = strategy.declaration();
                (strategy, declaration)
            })
            .map_err(|e| e.to_string())
    }));
    match built {
        Ok(Ok((strategy, declaration))) => ROk(BuiltStrategy {
            strategy: Guarded::new(strategy).into_box(),
            declaration,
        }),
        Ok(Err(message)) => RErr(RString::from(message)),
        Err(payload) => RErr(panic_error("strategy constructor panicked", payload)),
    }
}

/// Returns `f()` for the root module's `name` and `version`; a panic gives the empty
/// string, which never matches the signed metadata, so the host refuses the plugin.
pub fn guarded_static_str(f: impl FnOnce() -> &'static str) -> RStr<'static> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(s) => RStr::from_str(s),
        Err(payload) => {
            forget_payload(payload);
            RStr::from_str("")
        }
    }
}

/// Installs, once, a quiet panic hook in the plugin's own copy of std (a cdylib links its own
/// std, so this affects the plugin's panics only): one line with the message and location for
/// the first 10 panics (worded "caught a panic at FILE:LINE", never "panicked at", so logs of
/// a healthy host do not read like a crash), then nothing, and never a backtrace, whatever
/// `RUST_BACKTRACE` says. A plugin that exports its root module without the macro may call
/// this itself, first thing in its root-module function. Every panic is still caught and
/// returned to the SDK as an error, which counts it. Without this, a plugin that panics on
/// some inputs would capture and symbolicate a backtrace per panic when `RUST_BACKTRACE` is
/// set — milliseconds and retained memory on the caller's hot path. Called by the root-module
/// export of [`export_strategy_plugin!`](crate::export_strategy_plugin), i.e. only when the
/// plugin is loaded as a library.
pub fn install_quiet_panic_hook(plugin: &'static str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        static PRINTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        std::panic::set_hook(Box::new(move |info| {
            let n = PRINTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n < 10 {
                // Not `{info}`: its "panicked at" reads like a failure in test and service logs.
                let at = info
                    .location()
                    .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
                eprintln!(
                    "abkit plugin {plugin}: caught a panic{at} (returned to the SDK as an error): {}",
                    panic_message(info.payload())
                );
            }
            if n == 9 {
                eprintln!("abkit plugin {plugin}: further panics are not printed; the SDK counts them");
            }
        }));
    });
}

/// The message of a panic payload: the `&str` or `String` given to `panic!`, else a
/// placeholder.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "a panic payload that is not a string"
    }
}

/// `"<context>: <panic message>"`, then disposes of the payload without risking a second
/// panic escaping.
fn panic_error(context: &str, payload: Box<dyn Any + Send>) -> RString {
    let message = RString::from(format!("{context}: {}", panic_message(&*payload)));
    forget_payload(payload);
    message
}

/// Drops a panic payload; should its `Drop` panic in turn, that payload is leaked instead.
fn forget_payload(payload: Box<dyn Any + Send>) {
    if let Err(nested) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(nested);
    }
}

/// Exports a [`StrategyImpl`] as an abkit strategy plugin.
///
/// The syntax (the crate documentation has a complete, tested plugin):
///
/// ```text
/// export_strategy_plugin! {
///     name: "switchback",                  // a `&'static str` constant: the plugin name
///     version: env!("CARGO_PKG_VERSION"),  // a `&'static str` constant: the plugin version
///     new: Switchback::new,                // FnOnce(&ExperimentSpec) -> Result<T, E>, T: StrategyImpl, E: Display
/// }
/// ```
///
/// Invoke it once, at the crate root of a `cdylib` crate that depends on `abi_stable`
/// directly (abi_stable's generated code names `::abi_stable`). It generates:
///
/// - `pub fn abkit_root_module() -> PluginModRef`: the root module, whose `name`,
///   `version` and `new_strategy` run under `catch_unwind`; every strategy it builds is
///   wrapped in a guard that catches panics of `assign` and of its drop. Tests call it to
///   exercise exactly what the host calls;
/// - the `#[export_root_module]` symbol that abi_stable's loader looks up (it contains
///   abi_stable's own `unsafe`/`#[no_mangle]` code; the macro allows `unsafe_code` for that
///   item only, so the plugin crate can keep denying it);
/// - `#[cfg(panic = "abort")] compile_error!(..)`: a plugin built to abort cannot keep a
///   panic away from the host, so it does not build. (No runtime test can cover this: test
///   builds always unwind.)
///
/// Because the exported symbol has one fixed name, two plugin crates cannot be linked into
/// the same binary: test each plugin in its own crate (its rlib), or load the cdylibs.
///
/// [`StrategyImpl`]: crate::StrategyImpl
#[macro_export]
macro_rules! export_strategy_plugin {
    (name: $name:expr, version: $version:expr, new: $new:expr $(,)?) => {
        #[cfg(panic = "abort")]
        ::core::compile_error!(
            "abkit strategy plugins must be built with `panic = \"unwind\"`: with `panic = \"abort\"` \
             a panic in the plugin kills the host process. Set `panic = \"unwind\"` in the profile \
             (and do not pass `-C panic=abort`)."
        );

        /// The root module this plugin exports (generated by `export_strategy_plugin!`).
        pub fn abkit_root_module() -> $crate::PluginModRef {
            extern "C" fn __abkit_name() -> $crate::abi_stable::std_types::RStr<'static> {
                const __ABKIT_NAME: &str = $name;
                $crate::__private::guarded_static_str(|| __ABKIT_NAME)
            }
            extern "C" fn __abkit_version() -> $crate::abi_stable::std_types::RStr<'static> {
                const __ABKIT_VERSION: &str = $version;
                $crate::__private::guarded_static_str(|| __ABKIT_VERSION)
            }
            extern "C" fn __abkit_new_strategy(
                spec: &$crate::ExperimentSpec<'_>,
            ) -> $crate::abi_stable::std_types::RResult<
                $crate::BuiltStrategy,
                $crate::abi_stable::std_types::RString,
            > {
                $crate::__private::new_guarded_strategy(spec, $new)
            }
            const __ABKIT_ROOT: &$crate::abi_stable::prefix_type::WithMetadata<$crate::PluginMod> =
                &$crate::abi_stable::prefix_type::WithMetadata::new($crate::PluginMod {
                    name: __abkit_name,
                    version: __abkit_version,
                    new_strategy: __abkit_new_strategy,
                });
            $crate::PluginModRef(__ABKIT_ROOT.static_as_prefix())
        }

        #[allow(unsafe_code)]
        const _: () = {
            #[$crate::abi_stable::export_root_module]
            fn abkit_exported_root_module() -> $crate::PluginModRef {
                $crate::__private::install_quiet_panic_hook($name);
                abkit_root_module()
            }
        };
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Attribute, PluginModRef};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const WEIGHTS: [u32; 2] = [50, 50];

    fn request<'a>(unit_id: &'a str, attributes: &'a [Attribute<'a>]) -> Request<'a> {
        Request::at(unit_id, attributes, 0)
    }

    fn spec(config_json: &str) -> ExperimentSpec<'_> {
        ExperimentSpec::new("exp", "exp", &WEIGHTS, 10_000, config_json)
    }

    /// Answers variant 1, except for unit ids that make it panic.
    struct Fragile;

    impl StrategyImpl for Fragile {
        fn assign(&self, request: &Request<'_>) -> Decision {
            match request.unit_id.as_str() {
                "boom" => panic!("boom for unit {}", request.unit_id),
                "static" => panic!("a static message"),
                "any" => std::panic::panic_any(42_u8),
                _ => Decision::Variant(1),
            }
        }
    }

    impl Fragile {
        fn new(spec: &ExperimentSpec<'_>) -> Result<Self, String> {
            match spec.strategy_config_json() {
                "{}" => Ok(Fragile),
                "panic" => panic!("constructor exploded"),
                other => Err(format!("unexpected strategy_config {other}")),
            }
        }
    }

    export_strategy_plugin! {
        name: "fragile",
        version: "9.8.7",
        new: Fragile::new,
    }

    #[test]
    fn a_panicking_assign_through_the_box_becomes_an_error_and_the_process_survives() {
        let strategy: StrategyBox = Strategy_TO::from_value(Guarded::new(Fragile), TD_Opaque);
        assert_eq!(
            strategy.assign(&request("boom", &[])),
            Decision::Error(RString::from("strategy panicked: boom for unit boom"))
        );
        assert_eq!(
            strategy.assign(&request("static", &[])),
            Decision::Error(RString::from("strategy panicked: a static message"))
        );
        let Decision::Error(message) = strategy.assign(&request("any", &[])) else {
            panic!("expected an error");
        };
        assert!(message.as_str().starts_with("strategy panicked: "));
        // The same instance keeps answering afterwards.
        assert_eq!(
            strategy.assign(&request("user-1", &[])),
            Decision::Variant(1)
        );
    }

    #[test]
    fn new_strategy_turns_a_panic_and_an_error_into_err() {
        let panicked = new_guarded_strategy(&spec("panic"), Fragile::new);
        let message = panicked.into_result().err().unwrap();
        assert_eq!(
            message.as_str(),
            "strategy constructor panicked: constructor exploded"
        );

        let refused = new_guarded_strategy(&spec("{\"x\":1}"), Fragile::new);
        let message = refused.into_result().err().unwrap();
        assert_eq!(message.as_str(), "unexpected strategy_config {\"x\":1}");
    }

    #[test]
    fn the_exported_root_module_goes_through_the_guards() {
        let root: PluginModRef = abkit_root_module();
        assert_eq!(root.name()().as_str(), "fragile");
        assert_eq!(root.version()().as_str(), "9.8.7");
        assert!(root.new_strategy()(&spec("panic")).is_err());
        let built = root.new_strategy()(&spec("{}")).unwrap();
        assert_eq!(built.declaration, Declaration::unit_id());
        let strategy = built.strategy;
        assert_eq!(
            strategy.assign(&request("user-1", &[])),
            Decision::Variant(1)
        );
        assert!(matches!(
            strategy.assign(&request("boom", &[])),
            Decision::Error(_)
        ));
    }

    #[test]
    fn a_panicking_drop_does_not_escape_and_the_inner_value_is_dropped_once() {
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct PanicsOnDrop;
        impl StrategyImpl for PanicsOnDrop {
            fn assign(&self, _: &Request<'_>) -> Decision {
                Decision::NotEnrolled
            }
        }
        impl Drop for PanicsOnDrop {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::SeqCst);
                panic!("drop exploded");
            }
        }
        drop(Guarded::new(PanicsOnDrop).into_box());
        assert_eq!(DROPS.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_declaration_is_returned_and_a_panicking_one_refuses_the_build() {
        struct Declares(bool);
        impl StrategyImpl for Declares {
            fn assign(&self, _: &Request<'_>) -> Decision {
                Decision::NotEnrolled
            }
            fn declaration(&self) -> Declaration {
                assert!(self.0, "no declaration today");
                Declaration::by_attribute("team", Some(60_000), true)
            }
        }
        let built = new_guarded_strategy(&spec("{}"), |_| Ok::<_, String>(Declares(true)))
            .into_result()
            .ok()
            .unwrap();
        assert_eq!(
            built.declaration.randomisation,
            crate::Randomisation::Attribute {
                name: "team".into(),
                window_ms: abi_stable::std_types::ROption::RSome(60_000)
            }
        );
        assert!(built.declaration.attributes[0].required);
        let failed = new_guarded_strategy(&spec("{}"), |_| Ok::<_, String>(Declares(false)));
        assert_eq!(
            failed.into_result().err().unwrap().as_str(),
            "strategy constructor panicked: no declaration today"
        );
    }

    #[test]
    fn a_panicking_name_gives_the_empty_string() {
        assert_eq!(guarded_static_str(|| "x").as_str(), "x");
        assert_eq!(guarded_static_str(|| panic!("no name")).as_str(), "");
    }

    #[test]
    fn attribute_finds_the_first_match_and_from_index_maps_options() {
        let attrs = [
            Attribute::new("city", "paris"),
            Attribute::new("city", "rome"),
        ];
        let req = request("u", &attrs);
        assert_eq!(req.attribute("city"), Some("paris"));
        assert_eq!(req.attribute("team"), None);
        assert_eq!(Decision::from_index(Some(3)), Decision::Variant(3));
        assert_eq!(Decision::from_index(None), Decision::NotEnrolled);
    }
}
