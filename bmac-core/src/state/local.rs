//! placeholder
/// placeholder
pub struct LocalStore;
/// placeholder
pub const COMPACT_EVERY: usize = 0;
