//! Importers that turn another system's description of security groups into a native config.

pub mod aws;
pub mod cloudformation;
pub mod terraform;

#[cfg(test)]
mod testing;
