//! The two bpf(2) calls aya does not expose: which interface a pinned link is attached to.
//!
//! A tcx or XDP link outlives its interface: delete the interface and the link stays pinned but
//! defunct (ifindex 0); recreate it and the pinned link still points at nothing. Reusing such a
//! link would leave the new interface unfiltered, so the agent checks before reusing one.

use std::{
    ffi::CString,
    os::fd::{FromRawFd as _, OwnedFd},
    os::unix::ffi::OsStrExt as _,
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_DETACH: libc::c_long = 34;

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("{path}: not a valid path for bpffs")]
    BadPath { path: String },
    #[error("opening pinned object {path}: {source}")]
    ObjGet {
        path: String,
        source: std::io::Error,
    },
    #[error("reading link info of {path}: {source}")]
    Info {
        path: String,
        source: std::io::Error,
    },
    #[error("detaching link {path}: {source}")]
    Detach {
        path: String,
        source: std::io::Error,
    },
}

#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_link_info` up to and including the xdp/tcx `ifindex` (offset 16).
#[repr(C)]
#[derive(Default)]
struct LinkInfoPrefix {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    ifindex: u32,
    attach_type: u32,
}

/// What a pinned XDP or tcx link is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkTarget {
    pub program_id: u32,
    /// 0 when the interface is gone (the link is defunct).
    pub ifindex: u32,
}

/// Opens a pinned bpf object.
fn obj_get(path: &Path) -> Result<OwnedFd, SysError> {
    let shown = path.display().to_string();
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| SysError::BadPath {
        path: shown.clone(),
    })?;
    let attr = ObjGetAttr {
        pathname: c_path.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: BPF_OBJ_GET reads `attr` (its size is passed) and the NUL-terminated path.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &attr as *const ObjGetAttr,
            std::mem::size_of::<ObjGetAttr>(),
        )
    };
    if fd < 0 {
        return Err(SysError::ObjGet {
            path: shown,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: the kernel just returned this fd to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Detaches a pinned link now. Dropping the last reference (removing the pin) also detaches,
/// but the kernel does it later, after an RCU grace period: a caller who promised "detached"
/// must not return before it is.
pub fn detach_pinned_link(path: &Path) -> Result<(), SysError> {
    let fd = obj_get(path)?;
    #[repr(C)]
    struct DetachAttr {
        link_fd: u32,
        _pad: [u32; 3],
    }
    let attr = DetachAttr {
        link_fd: std::os::fd::AsRawFd::as_raw_fd(&fd) as u32,
        _pad: [0; 3],
    };
    // SAFETY: BPF_LINK_DETACH reads `attr`, whose size is passed.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            &attr as *const DetachAttr,
            std::mem::size_of::<DetachAttr>(),
        )
    };
    if result < 0 {
        let error = std::io::Error::last_os_error();
        // A link whose interface is gone is detached already.
        if error.raw_os_error() != Some(libc::ENOLINK) {
            return Err(SysError::Detach {
                path: path.display().to_string(),
                source: error,
            });
        }
    }
    Ok(())
}

pub fn pinned_link_target(path: &Path) -> Result<LinkTarget, SysError> {
    let shown = path.display().to_string();
    let fd = obj_get(path)?;
    let mut info = LinkInfoPrefix::default();
    let attr = InfoAttr {
        bpf_fd: std::os::fd::AsRawFd::as_raw_fd(&fd) as u32,
        info_len: std::mem::size_of::<LinkInfoPrefix>() as u32,
        info: &mut info as *mut LinkInfoPrefix as u64,
    };
    // SAFETY: the kernel writes at most `info_len` bytes into `info`, which outlives the call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &attr as *const InfoAttr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    if result < 0 {
        return Err(SysError::Info {
            path: shown,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(LinkTarget {
        program_id: info.prog_id,
        ifindex: info.ifindex,
    })
}

/// The index of `interface` in the calling thread's network namespace, if it exists.
pub fn ifindex(interface: &str) -> Option<u32> {
    let name = CString::new(interface).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Every interface in the calling thread's network namespace, with its MAC when it has one:
/// what `locate` finds instances' interfaces among. Through getifaddrs (netlink), not /sys,
/// which shows the namespace it was mounted in.
pub fn links() -> Result<Vec<crate::locate::HostLink>, std::io::Error> {
    let mut links: Vec<crate::locate::HostLink> = Vec::new();
    for entry in nix::ifaddrs::getifaddrs()? {
        let mac = entry
            .address
            .as_ref()
            .and_then(|address| address.as_link_addr())
            .and_then(|link| link.addr())
            .filter(|octets| *octets != [0; 6])
            .map(crate::model::MacAddr);
        match links.iter_mut().find(|l| l.name == entry.interface_name) {
            Some(known) => known.mac = known.mac.or(mac),
            None => links.push(crate::locate::HostLink {
                name: entry.interface_name,
                mac,
            }),
        }
    }
    Ok(links)
}
