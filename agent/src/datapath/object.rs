//! The eBPF object built by `build.rs`, embedded in the binary.

use aya::include_bytes_aligned;

static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sgwall-filter"));

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(
        "this sgwall binary was built with AYA_BUILD_SKIP=1 and carries no eBPF object; rebuild without it"
    )]
    NotBuilt,
}

/// The ELF bytes of the datapath, aligned for aya's parser.
pub fn bytes() -> Result<&'static [u8], ObjectError> {
    if OBJECT.is_empty() {
        Err(ObjectError::NotBuilt)
    } else {
        Ok(OBJECT)
    }
}
