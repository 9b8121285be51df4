//! The one bounds-checked packet accessor. Every read of packet bytes goes through
//! [`Packet::get`], which proves to the verifier (and to us) that `N` bytes exist at `offset`;
//! [`Bytes`] then reads inside that window only, with the window checked at compile time.

/// Headers are never looked for deeper than this: it bounds every variable offset, which the
/// verifier needs, and it is far beyond any legitimate header chain we parse.
pub const MAX_HEADER_OFFSET: usize = 512;

#[derive(Clone, Copy)]
pub struct Packet {
    data: usize,
    data_end: usize,
}

/// `N` bytes of the packet known to be in bounds.
#[derive(Clone, Copy)]
pub struct Bytes<const N: usize> {
    ptr: *const u8,
}

impl Packet {
    #[inline(always)]
    pub fn new(data: usize, data_end: usize) -> Self {
        Self { data, data_end }
    }

    /// `N` bytes at `offset`, or `None` when the packet is shorter.
    #[inline(always)]
    pub fn get<const N: usize>(&self, offset: usize) -> Option<Bytes<N>> {
        if offset > MAX_HEADER_OFFSET {
            return None;
        }
        let start = self.data + offset;
        if start + N > self.data_end {
            return None;
        }
        Some(Bytes {
            ptr: start as *const u8,
        })
    }
}

impl<const N: usize> Bytes<N> {
    #[inline(always)]
    pub fn u8<const AT: usize>(&self) -> u8 {
        const { assert!(AT < N) };
        // SAFETY: `Packet::get` checked that N bytes follow `ptr`, and AT < N.
        unsafe { *self.ptr.add(AT) }
    }

    #[inline(always)]
    pub fn be16<const AT: usize>(&self) -> u16 {
        const { assert!(AT + 2 <= N) };
        // SAFETY: as in `u8`; the read is unaligned because headers sit at any offset.
        u16::from_be(unsafe { (self.ptr.add(AT) as *const u16).read_unaligned() })
    }

    #[inline(always)]
    pub fn be32<const AT: usize>(&self) -> u32 {
        const { assert!(AT + 4 <= N) };
        // SAFETY: as in `be16`.
        u32::from_be(unsafe { (self.ptr.add(AT) as *const u32).read_unaligned() })
    }

    /// Copies `M` bytes starting at `AT` (addresses), keeping network byte order.
    #[inline(always)]
    pub fn array<const AT: usize, const M: usize>(&self) -> [u8; M] {
        const { assert!(AT + M <= N) };
        // SAFETY: as in `be16`.
        unsafe { (self.ptr.add(AT) as *const [u8; M]).read_unaligned() }
    }
}
