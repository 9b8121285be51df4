//! Everything that talks to the kernel: the embedded eBPF object, loading, pins, attachment,
//! and the kernel side of the map writer.

pub mod attach;
pub mod kernel_maps;
pub mod loader;
pub mod object;
pub mod sys;
