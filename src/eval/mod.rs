//! Asking the real Nix evaluator (`nix eval`, `nix-instantiate`) what static
//! analysis cannot tell.

/// A failed evaluator call: the command, its status and its stderr.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("`{command}` is not installed; install Nix or run without --eval")]
    NotInstalled { command: String },
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Failed { command: String, status: String, stderr: String },
}
