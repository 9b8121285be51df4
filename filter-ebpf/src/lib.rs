//! Exists so `agent` can name this crate as a build dependency: cargo then rebuilds the embedded
//! object whenever this crate or `filter-common` changes. The programs live in `main.rs`.
#![no_std]
