use std::time::Duration;

use clap::Parser;

use super::*;
use crate::server::limits::Limits;

#[test]
fn durations_and_sizes_in_every_accepted_form() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("4s"), Ok(Duration::from_secs(4)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("-1s").is_err());
    assert_eq!(parse_bytes("4Mi"), Ok(4 * 1024 * 1024));
    assert_eq!(parse_bytes("512Ki"), Ok(512 * 1024));
    assert_eq!(parse_bytes("2k"), Ok(2000));
    assert_eq!(parse_bytes("4194304"), Ok(4_194_304));
    assert!(parse_bytes("lots").is_err());
}

#[derive(Parser)]
struct LimitFlags {
    #[command(flatten)]
    limits: Limits,
}

/// The flags' defaults (strings clap parses) and `Limits::default()` (constants) are written
/// apart; they must agree, or `serve` and an embedded server would differ.
#[test]
fn flag_defaults_are_the_limits_defaults() {
    let parsed = match LimitFlags::try_parse_from(["guardrails"]) {
        Ok(flags) => flags.limits,
        Err(error) => panic!("{error}"),
    };
    let mut defaults = Limits::default();
    assert_eq!(
        parsed.decision_workers, 0,
        "0 stands for the number of CPUs"
    );
    defaults.decision_workers = 0;
    assert_eq!(parsed, defaults);
}
