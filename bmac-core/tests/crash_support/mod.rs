//! Support for `crash_resume.rs`: the seeded plans ([`scenario`]), the side-effect-recording
//! test cloud ([`cloud`]), the child process that applies ([`child`]), starting and killing
//! it ([`process`]), and what the parent inspects between runs ([`inspect`]).
#![allow(dead_code)]

pub mod child;
pub mod cloud;
pub mod inspect;
pub mod process;
pub mod scenario;
