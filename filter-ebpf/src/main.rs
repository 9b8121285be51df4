//! sgwall datapath: XDP and TC programs sharing one verdict path (`docs/design.md`). This file
//! holds only the program entry points.
//!
//! The path runs in two stages joined by a tail call. *Inspect* (`inspect.rs`, one program per
//! hook) parses the packet and settles everything that needs its bytes; what is left to decide
//! it writes as scalars to a per-CPU scratch slot and tail-calls *decide* (`decide.rs`, one
//! program per program type), which does conntrack and rule classification. Each stage is
//! verified on its own, so the verifier never multiplies every parse outcome by every decision
//! path.
#![no_std]
#![no_main]
// Atomic adds on shared map values (see conntrack::add).
#![allow(internal_features)]
#![feature(core_intrinsics)]
// Map keys go by reference: passing them by value copies 44-byte keys onto a 512-byte stack.
#![allow(clippy::needless_borrows_for_generic_args)]

mod arp;
mod checks;
mod conntrack;
mod decide;
mod dhcp;
mod fragments;
mod guards;
mod inspect;
mod maps;
mod packet;
mod parse;
mod policy;
mod telemetry;
mod verdict;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

use crate::inspect::Hook;

#[inline(always)]
fn xdp_verdict(admitted: bool) -> u32 {
    if admitted {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

#[inline(always)]
fn tc_verdict(admitted: bool) -> i32 {
    if admitted {
        // Pass means "not ours to drop": later tcx programs still see the packet.
        TC_ACT_UNSPEC
    } else {
        TC_ACT_SHOT
    }
}

// Stage 1: inspect, per hook.

#[xdp]
pub fn sgw_xdp_ingress(ctx: XdpContext) -> u32 {
    xdp_verdict(inspect::xdp(&ctx))
}

#[classifier]
pub fn sgw_tc_ingress(ctx: TcContext) -> i32 {
    tc_verdict(inspect::tc(&ctx, Hook::Ingress))
}

#[classifier]
pub fn sgw_tc_egress(ctx: TcContext) -> i32 {
    tc_verdict(inspect::tc(&ctx, Hook::Egress))
}

// Stage 2: decide, per program type, reached by tail call from stage 1.

#[xdp]
pub fn sgw_xdp_decide(ctx: XdpContext) -> u32 {
    xdp_verdict(decide::decide(&ctx))
}

#[classifier]
pub fn sgw_tc_decide(ctx: TcContext) -> i32 {
    tc_verdict(decide::decide(&ctx))
}

/// Benchmark baseline only: returns pass and does nothing else. Never attached by the agent.
#[xdp]
pub fn sgw_bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
