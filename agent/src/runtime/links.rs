//! Pinned links: how enforcement survives the agent.
//!
//! Each (interface, hook) has one pinned link. On (re)start the agent reuses it when it is
//! still attached to the interface's current ifindex, atomically swapping in its freshly loaded
//! program (`bpf_link_update`): no instant without a filter. A defunct link (interface deleted
//! or recreated) is unpinned and a new one attached.

use std::{io, path::Path};

use aya::{
    Ebpf,
    programs::{
        ProgramError, SchedClassifier, Xdp,
        links::{FdLink, LinkError, PinnedLink},
        tc::SchedClassifierLink,
        xdp::XdpLink,
    },
};

use crate::{
    datapath::{
        attach::{AttachError, XdpAttachMode, attach},
        sys::{self, SysError},
    },
    model::Hook,
    pins::Paths,
};

#[derive(Debug, thiserror::Error)]
pub enum LinkPinError {
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("pinned link {path}: {source}")]
    Pinned { path: String, source: LinkError },
    #[error("replacing the program of pinned link {path}: {source}")]
    Replace { path: String, source: ProgramError },
    #[error("pinning link at {path}: {source}")]
    Pin {
        path: String,
        source: aya::pin::PinError,
    },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> LinkPinError + '_ {
    move |source| LinkPinError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// How a hook came to run our program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkOutcome {
    /// A pinned link was still attached: its program was swapped atomically.
    Reused,
    /// Nothing was pinned (or the pin was defunct): attached and pinned now.
    Attached,
}

/// Makes `hook` on `interface` (ifindex `ifindex`) run the loaded program, pinned.
pub fn ensure_attached(
    ebpf: &mut Ebpf,
    paths: &Paths,
    interface: &str,
    ifindex: u32,
    hook: Hook,
    xdp_mode: XdpAttachMode,
) -> Result<LinkOutcome, LinkPinError> {
    let pin = paths.link(interface, hook);
    if pin.exists() {
        let target = sys::pinned_link_target(&pin)?;
        if target.ifindex == ifindex {
            replace_program(ebpf, &pin, hook)?;
            return Ok(LinkOutcome::Reused);
        }
        // Defunct: its interface is gone, or was recreated under a new index.
        std::fs::remove_file(&pin).map_err(io_error(&pin))?;
    }
    let link = attach(ebpf, interface, hook, xdp_mode)?;
    if let Some(parent) = pin.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    link.pin(&pin).map_err(|source| LinkPinError::Pin {
        path: pin.display().to_string(),
        source,
    })?;
    Ok(LinkOutcome::Attached)
}

fn replace_program(ebpf: &mut Ebpf, pin: &Path, hook: Hook) -> Result<(), LinkPinError> {
    let shown = pin.display().to_string();
    let pinned_error = |source| LinkPinError::Pinned {
        path: shown.clone(),
        source,
    };
    let replace_error = |source| LinkPinError::Replace {
        path: shown.clone(),
        source,
    };
    let link = FdLink::from(PinnedLink::from_pin(pin).map_err(pinned_error)?);
    let program = ebpf
        .program_mut(hook.program())
        .ok_or(AttachError::MissingProgram(hook.program()))?;
    match hook {
        Hook::XdpIngress => {
            let xdp: &mut Xdp = program.try_into().map_err(replace_error)?;
            let link = XdpLink::try_from(link).map_err(pinned_error)?;
            let id = xdp.attach_to_link(link).map_err(replace_error)?;
            // The pin keeps the link; the program must not detach it when dropped.
            let link = xdp.take_link(id).map_err(replace_error)?;
            std::mem::drop(FdLink::try_from(link).map_err(pinned_error)?);
        }
        Hook::TcIngress | Hook::TcEgress => {
            let tc: &mut SchedClassifier = program.try_into().map_err(replace_error)?;
            let link = SchedClassifierLink::try_from(link).map_err(pinned_error)?;
            let id = tc.attach_to_link(link).map_err(replace_error)?;
            let link = tc.take_link(id).map_err(replace_error)?;
            std::mem::drop(FdLink::try_from(link).map_err(pinned_error)?);
        }
    }
    Ok(())
}

/// Stops `hook` on `interface` at once, then removes the pin.
pub fn detach(paths: &Paths, interface: &str, hook: Hook) -> Result<bool, LinkPinError> {
    let pin = paths.link(interface, hook);
    if !pin.exists() {
        return Ok(false);
    }
    sys::detach_pinned_link(&pin)?;
    match std::fs::remove_file(&pin) {
        Ok(()) => {
            if let Some(parent) = pin.parent() {
                // Only succeeds once the interface has no pinned hooks left.
                let _ = std::fs::remove_dir(parent);
            }
            Ok(true)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(io_error(&pin)(error)),
    }
}

/// Every (interface, hook) with a pinned link.
pub fn pinned(paths: &Paths) -> Vec<(String, Hook)> {
    let mut found = Vec::new();
    let Ok(interfaces) = std::fs::read_dir(paths.links_dir()) else {
        return found;
    };
    for interface in interfaces.flatten() {
        let name = interface.file_name().to_string_lossy().into_owned();
        for hook in [Hook::XdpIngress, Hook::TcIngress, Hook::TcEgress] {
            if paths.link(&name, hook).exists() {
                found.push((name.clone(), hook));
            }
        }
    }
    found.sort();
    found
}
