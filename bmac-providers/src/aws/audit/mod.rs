//! The audit concern on AWS: control-plane logging into CloudWatch Logs ([`logging`]), the S3
//! archive bucket ([`bucket`]), the Firehose pipeline from the log group into it ([`archive`])
//! and the metric filters and alarms on it ([`alarm`]).
//!
//! The pieces follow the catalogue's audit steps one to one; together they are the pipeline
//! AWS documents, end to end: the API server's audit events land in
//! `/aws/eks/<cluster>/cluster`, a subscription filter streams every record to Firehose,
//! Firehose writes them into the bucket, and CloudWatch alarms watch the same log group.

pub mod alarm;
pub mod archive;
pub mod bucket;
pub mod logging;
