//! Attaching the inspect programs to interfaces, as links that can be pinned.
//!
//! TC programs attach through tcx, first in the chain: a firewall's drop must come before any
//! other program's pass. XDP attaches through a bpf_link. Either way the caller gets an
//! [`FdLink`]: pin it and the program stays attached after the agent exits; drop it unpinned and
//! the program detaches.

use crate::model::Hook;
use aya::{
    Ebpf,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, LinkError},
        tc::TcAttachOptions,
    },
};

/// How XDP attaches: native in the driver, generic in the stack, or native when possible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpAttachMode {
    #[default]
    Auto,
    Native,
    Skb,
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("the loaded object has no program {0}")]
    MissingProgram(&'static str),
    #[error("attaching {hook} to {interface}: {source}")]
    Attach {
        hook: &'static str,
        interface: String,
        source: ProgramError,
    },
    #[error("taking the {hook} link on {interface}: {source}")]
    Link {
        hook: &'static str,
        interface: String,
        source: LinkError,
    },
}

/// Attaches `hook`'s program to `interface` (in the calling thread's network namespace).
pub fn attach(
    ebpf: &mut Ebpf,
    interface: &str,
    hook: Hook,
    xdp_mode: XdpAttachMode,
) -> Result<FdLink, AttachError> {
    let program = ebpf
        .program_mut(hook.program())
        .ok_or(AttachError::MissingProgram(hook.program()))?;
    let attach_error = |source| AttachError::Attach {
        hook: hook.name(),
        interface: interface.to_string(),
        source,
    };
    let link_error = |source| AttachError::Link {
        hook: hook.name(),
        interface: interface.to_string(),
        source,
    };
    match hook {
        Hook::XdpIngress => {
            let xdp: &mut Xdp = program.try_into().map_err(attach_error)?;
            let id = match xdp_mode {
                XdpAttachMode::Native => xdp.attach(interface, XdpMode::Driver),
                XdpAttachMode::Skb => xdp.attach(interface, XdpMode::Skb),
                XdpAttachMode::Auto => xdp
                    .attach(interface, XdpMode::Driver)
                    .or_else(|_| xdp.attach(interface, XdpMode::Skb)),
            }
            .map_err(attach_error)?;
            let link = xdp.take_link(id).map_err(attach_error)?;
            FdLink::try_from(link).map_err(link_error)
        }
        Hook::TcIngress | Hook::TcEgress => {
            let tc: &mut SchedClassifier = program.try_into().map_err(attach_error)?;
            let attach_type = if hook == Hook::TcIngress {
                TcAttachType::Ingress
            } else {
                TcAttachType::Egress
            };
            let id = tc
                .attach_with_options(
                    interface,
                    attach_type,
                    TcAttachOptions::TcxOrder(LinkOrder::first()),
                )
                .map_err(attach_error)?;
            let link = tc.take_link(id).map_err(attach_error)?;
            FdLink::try_from(link).map_err(link_error)
        }
    }
}
