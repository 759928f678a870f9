//! Any body to `/validate`: parsed, decided and answered, or refused with an envelope error;
//! never a panic.
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
    let parsed = guardrails::admission::parse_review(body);
    match guardrails::respond::validate_review(engine(), body) {
        Ok(reviewed) => {
            assert!(parsed.is_ok());
            let response = reviewed.review.response.expect("a response");
            assert_eq!(response.uid, reviewed.request.uid);
            serde_json::to_vec(&guardrails::admission::into_review(response)).expect("serialises");
        }
        Err(error) => assert_eq!(parsed.err(), Some(error)),
    }
});
