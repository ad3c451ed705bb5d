//! placeholder
/// placeholder
pub struct Planner;
