//! Interned `&'static str` for names that assignments return (variant names, plugin names).
//!
//! `assign` returns names without allocating and without tying the answer to a snapshot
//! guard, so names live for the process. Memory is bounded by the *distinct* names ever
//! configured (each at most a few dozen bytes), not by the number of reloads.

use rustc_hash::FxHashSet;
use std::sync::{Mutex, OnceLock};

/// The `&'static` copy of `s`, shared by every caller that interns the same text.
/// Called when building a snapshot, never on the assign path.
pub(crate) fn intern(s: &str) -> &'static str {
    static POOL: OnceLock<Mutex<FxHashSet<&'static str>>> = OnceLock::new();
    let pool = POOL.get_or_init(Default::default);
    // A poisoned lock only means another thread panicked while inserting; the set is still valid.
    let mut set = pool.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = set.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_text_gives_same_pointer() {
        let a = super::intern("treatment");
        let b = super::intern(&String::from("treatment"));
        assert!(std::ptr::eq(a, b));
    }
}
