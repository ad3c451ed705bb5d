//! placeholder
/// placeholder
pub enum GraphFormat {}
