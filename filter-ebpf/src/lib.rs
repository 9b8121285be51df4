//! Exists so `agent` can name this crate as a build dependency: cargo then rebuilds the embedded
//! object whenever this crate or `filter-common` changes. The programs' entry points are in
//! `main.rs`; the modules it declares hold the verdict path.
#![no_std]
