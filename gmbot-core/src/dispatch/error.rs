//! Why a dispatcher could not be built.

/// A dispatcher construction failure.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// A budget or retry setting is out of range.
    #[error("invalid dispatcher setting `{setting}`: {reason}")]
    Config {
        /// The offending field of [`DispatchConfig`](super::DispatchConfig).
        setting: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The shared budget's settings are out of range.
    #[error("invalid shared budget")]
    SharedBudget(#[from] super::BudgetError),
    /// The metrics could not be registered (e.g. a second dispatcher on the same registry).
    #[error("cannot register dispatcher metrics")]
    Metrics(#[from] prometheus::Error),
}
