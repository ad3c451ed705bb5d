//! placeholder
/// placeholder
#[derive(Debug)]
pub struct PlanError;
