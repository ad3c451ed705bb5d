//! placeholder
/// placeholder
pub struct Executor;
