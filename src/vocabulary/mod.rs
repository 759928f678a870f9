//! The shared vocabulary every stage speaks: the kinds decided, the actions recognised, the
//! enforcement modes and the verdict. Plain values with their wire names; imports nothing.

mod action;
mod kind;
mod mode;
mod verdict;

pub use action::Action;
pub use kind::Kind;
pub use mode::Mode;
pub use verdict::Verdict;
