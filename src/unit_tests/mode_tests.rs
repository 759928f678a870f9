//! Unit tests for `src/mode.rs` (kept apart so `src/` holds only shipped code).

use super::*;

#[test]
fn the_looser_mode_wins() {
    assert_eq!(Mode::Enforce.effective(Mode::Audit), Mode::Audit);
    assert_eq!(Mode::Audit.effective(Mode::Enforce), Mode::Audit);
    assert_eq!(Mode::Warn.effective(Mode::Enforce), Mode::Warn);
    assert_eq!(Mode::Enforce.effective(Mode::Enforce), Mode::Enforce);
}

#[test]
fn parses_only_known_modes() {
    assert_eq!("warn".parse::<Mode>(), Ok(Mode::Warn));
    assert!("Enforce".parse::<Mode>().is_err());
}
