//! sgwall: EC2 security group semantics enforced on Linux interfaces with eBPF.
//!
//! The pipeline is parse → validate → compile → apply. Everything up to and including
//! compilation is pure and needs no privileges; only [`datapath`] touches the kernel.

pub mod api;
pub mod compile;
pub mod config;
pub mod datapath;
pub mod error_text;
pub mod eval;
pub mod ids;
pub mod import;
#[cfg(test)]
mod input_fuzz;
pub mod inspect;
pub mod lab;
pub mod locate;
pub mod maps;
pub mod model;
pub mod netns;
pub mod pins;
pub mod plan;
pub mod probe;
pub mod process;
pub mod runtime;
pub mod table;
pub mod testgen;
