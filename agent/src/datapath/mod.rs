//! Everything that talks to the kernel: the embedded eBPF object, pins, attachment.

pub mod object;
