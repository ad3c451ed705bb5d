//! Support for the AWS provider tests that answer with the SDK's own mocks, for the operations
//! moto lacks: driving one handler directly on clients that reach nothing ([`handler`]), and a
//! stateful fake of the EKS add-on and Pod Identity operations ([`eks_fake`]).

#![allow(dead_code)]

pub mod eks_fake;
pub mod handler;
