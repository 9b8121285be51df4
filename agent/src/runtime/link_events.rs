//! Link change notifications (rtnetlink `RTMGRP_LINK`), so an interface that appears (a VM's
//! tap) is attached within milliseconds rather than at the next poll. The messages are not
//! parsed: any link event makes the agent look at its interfaces again, and the periodic poll
//! stays as the backstop if a notification is lost (the socket buffer can overflow).

use std::os::fd::{AsRawFd as _, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, socket,
};
use tokio::io::unix::AsyncFd;

const RTMGRP_LINK: u32 = 1;

pub struct LinkEvents {
    socket: AsyncFd<OwnedFd>,
}

impl LinkEvents {
    /// Subscribes in the calling thread's network namespace (the agent's, after `--netns`).
    pub fn subscribe() -> Result<Self, std::io::Error> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, RTMGRP_LINK))?;
        // SAFETY: the socket is owned here and lives exactly as long as the registration.
        let socket = unsafe { AsyncFd::register(fd) }
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        Ok(Self { socket })
    }

    /// Resolves when links changed; drains whatever is queued.
    pub async fn changed(&mut self) -> Result<(), std::io::Error> {
        let mut guard = self.socket.readable_mut().await?;
        guard.clear_ready();
        let mut buffer = [0u8; 8192];
        // Bounded: a burst is drained in a few reads; more waits for the next readiness.
        for _ in 0..64 {
            match recv(
                guard.get_inner().as_raw_fd(),
                &mut buffer,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => break,
                Ok(_) => {}
                Err(nix::errno::Errno::EAGAIN) => break,
                // ENOBUFS: notifications were lost; the caller rescans anyway.
                Err(nix::errno::Errno::ENOBUFS) => break,
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}
