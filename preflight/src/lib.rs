//! What a machine needs before sgwall can load and pin its datapath: root, BTF, bpffs on
//! `/sys/fs/bpf`, and Linux 6.6 or newer (tcx links). One check, shared by `cargo xtask test`,
//! the privileged test harness and the agent's own pin directory check.
//!
//! A crate of its own because xtask must build without the eBPF toolchain: it cannot depend on
//! the `sgwall` crate, whose build script compiles the datapath.

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

/// Where bpffs is mounted, and where sgwall pins by default.
pub const BPFFS: &str = "/sys/fs/bpf";
/// `statfs(2)`'s `f_type` of bpffs (`BPF_FS_MAGIC` in linux/magic.h).
pub const BPF_FS_MAGIC: u32 = 0xcafe_4a11;
/// The oldest kernel with tcx links, which pinned TC enforcement needs (README).
pub const MIN_KERNEL: (u32, u32) = (6, 6);

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The running kernel's major and minor version.
pub fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_kernel_release(&release)
}

fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The filesystem type (`statfs(2)` `f_type`) of the filesystem holding `path`.
pub fn filesystem_type(path: &Path) -> Option<u32> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statfs is a valid value for the kernel to overwrite.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stat` is a writable statfs.
    let result = unsafe { libc::statfs(path.as_ptr(), &mut stat) };
    // f_type is signed and of the platform's word size; the magic numbers are 32-bit.
    (result == 0).then_some(stat.f_type as u32)
}

pub fn is_on_bpffs(path: &Path) -> bool {
    filesystem_type(path) == Some(BPF_FS_MAGIC)
}

pub fn bpffs_mounted() -> bool {
    is_on_bpffs(Path::new(BPFFS))
}

/// `path` itself if it exists, else its closest ancestor that does.
pub fn nearest_existing(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .find(|candidate| !candidate.as_os_str().is_empty() && candidate.exists())
        .map(Path::to_path_buf)
}

/// Where a pin directory would be created, when that is not on bpffs: pins made anywhere else
/// are plain files the kernel cannot open as maps or links. `None` when the directory (or its
/// nearest existing ancestor) is on bpffs.
pub fn pin_dir_off_bpffs(pin_dir: &Path) -> Option<PathBuf> {
    let existing = nearest_existing(pin_dir)?;
    (!is_on_bpffs(&existing)).then_some(existing)
}

/// What stops sgwall (and the privileged tests) from loading and pinning a datapath here, if
/// anything.
pub fn privilege_problem() -> Option<String> {
    if !is_root() {
        return Some("needs root (loading eBPF programs, creating network namespaces)".into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
    }
    if !bpffs_mounted() {
        return Some(format!(
            "bpffs is not mounted on {BPFFS} (cargo xtask setup mounts it)"
        ));
    }
    kernel_problem(kernel_version())
}

fn kernel_problem(version: Option<(u32, u32)>) -> Option<String> {
    let (major, minor) = MIN_KERNEL;
    match version {
        Some(version) if version >= MIN_KERNEL => None,
        Some((have_major, have_minor)) => Some(format!(
            "kernel {have_major}.{have_minor} lacks tcx links (needs {major}.{minor} or newer)"
        )),
        None => Some("cannot read the kernel version".into()),
    }
}

/// Where `cargo xtask setup` leaves the guest kernel of the QEMU test (tier 3): `vmlinuz` and,
/// under `modules/`, the virtio modules the initramfs loads, from Debian's cloud kernel package.
pub const GUEST_DIR: &str = "/var/cache/sgwall/guest";

/// The guest's virtio network modules, in the order they must be loaded (each needs the ones
/// before it).
pub const GUEST_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

/// What the guest test lacks here, if anything: QEMU, busybox, dnsmasq or the guest kernel.
pub fn guest_problem() -> Option<String> {
    let missing: Vec<&str> = [
        "/usr/bin/qemu-system-x86_64",
        "/bin/busybox",
        "/usr/sbin/dnsmasq",
    ]
    .into_iter()
    .filter(|path| !Path::new(path).exists())
    .collect();
    if !missing.is_empty() {
        return Some(format!(
            "missing {} (cargo xtask setup installs them)",
            missing.join(", ")
        ));
    }
    let guest = Path::new(GUEST_DIR);
    let kernel_missing = !guest.join("vmlinuz").exists()
        || GUEST_MODULES
            .iter()
            .any(|m| !guest.join("modules").join(format!("{m}.ko")).exists());
    kernel_missing.then(|| format!("no guest kernel in {GUEST_DIR} (cargo xtask setup fetches it)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_parse_to_major_and_minor() {
        assert_eq!(parse_kernel_release("6.18.0-1-amd64\n"), Some((6, 18)));
        assert_eq!(parse_kernel_release("6.6"), Some((6, 6)));
        assert_eq!(parse_kernel_release("garbage"), None);
    }

    #[test]
    fn kernels_before_6_6_are_refused_by_name() {
        assert_eq!(kernel_problem(Some((6, 6))), None);
        assert_eq!(kernel_problem(Some((7, 0))), None);
        assert_eq!(
            kernel_problem(Some((6, 5))).as_deref(),
            Some("kernel 6.5 lacks tcx links (needs 6.6 or newer)")
        );
        assert!(kernel_problem(None).is_some());
    }

    #[test]
    fn a_missing_pin_dir_is_judged_by_its_nearest_existing_ancestor() {
        let missing = Path::new("/proc/self/no/such/dir");
        assert_eq!(nearest_existing(missing), Some(PathBuf::from("/proc/self")));
        // procfs is not bpffs.
        assert_eq!(
            pin_dir_off_bpffs(missing),
            Some(PathBuf::from("/proc/self"))
        );
        assert_eq!(filesystem_type(Path::new("/proc")), Some(0x9fa0));
    }
}
