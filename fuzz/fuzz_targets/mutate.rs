//! Any body to `/mutate`: answered (allowed, with at most a valid patch) or refused; never a panic.
#![no_main]

use std::sync::OnceLock;

use guardrails::decide::Engine;
use guardrails::reload::EngineSource;
use libfuzzer_sys::fuzz_target;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        // The embedded policies and config: every field at its default.
        EngineSource::default()
            .load()
            .expect("the embedded policies and config load")
    })
}

fuzz_target!(|body: &[u8]| {
    let engine = engine();
    if let Ok((review, operations)) =
        guardrails::mutate::mutate_review(&engine.config, &engine.live_namespaces.load(), body)
    {
        assert_eq!(review["response"]["allowed"], true);
        assert_eq!(review["response"]["patch"].is_string(), operations > 0);
    }
});
