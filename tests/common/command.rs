//! Running the `guardrails` binary.

/// Run a command that must succeed and return its stdout.
pub trait SucceedsExt {
    fn succeeds(&mut self) -> Vec<u8>;
}

impl SucceedsExt for assert_cmd::Command {
    fn succeeds(&mut self) -> Vec<u8> {
        self.assert().success().get_output().stdout.clone()
    }
}
