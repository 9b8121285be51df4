#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, map, xdp},
    maps::{Array, HashMap},
    programs::{TcContext, XdpContext},
};
use filter_common::{IFACE_CAPACITY, IfaceConfig, IfaceKey, slot_of_generation};

#[map(name = "SGW_ACTIVE")]
static ACTIVE: Array<u64> = Array::with_max_entries(1, 0);

#[map(name = "SGW_IFACES")]
static IFACES: HashMap<IfaceKey, IfaceConfig> = HashMap::with_max_entries(IFACE_CAPACITY, 0);

/// Fail closed: a packet on an interface the active policy does not describe is dropped.
#[inline(always)]
fn interface_is_configured(ifindex: u32) -> bool {
    let Some(generation) = ACTIVE.get(0) else {
        return false;
    };
    let key = IfaceKey {
        slot: slot_of_generation(*generation),
        _pad: [0; 3],
        ifindex,
    };
    IFACES.get_ptr(key).is_some()
}

#[xdp]
pub fn sgw_xdp_ingress(ctx: XdpContext) -> u32 {
    if interface_is_configured(ctx.ingress_ifindex() as u32) {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

#[classifier]
pub fn sgw_tc_ingress(ctx: TcContext) -> i32 {
    tc_verdict(&ctx)
}

#[classifier]
pub fn sgw_tc_egress(ctx: TcContext) -> i32 {
    tc_verdict(&ctx)
}

#[inline(always)]
fn tc_verdict(ctx: &TcContext) -> i32 {
    // SAFETY: the context pointer is the kernel's __sk_buff for this invocation.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if interface_is_configured(ifindex) {
        TC_ACT_UNSPEC
    } else {
        TC_ACT_SHOT
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
