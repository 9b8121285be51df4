//! Stage 2, one program per program type, reached by tail call: the checks before conntrack
//! (`checks.rs`), the network ACL, conntrack and rule classification, from the scratch facts
//! only (it never touches packet memory).

use aya_ebpf::{EbpfContext, helpers::bpf_ktime_get_ns};
use aya_log_ebpf::warn;
use filter_common::*;

use crate::{
    checks,
    conntrack::{self, Flow},
    fragments,
    maps::SCRATCH,
    policy::{self, Lookup, Policy},
    telemetry::{self, EventFlow},
    verdict::{self, Outcome},
};

/// Denials worth a flow event for the agent: policy decisions, not malformed input (which the
/// counters already cover).
#[inline(always)]
fn is_policy_decision(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::NoRule
            | Reason::SpoofedSource
            | Reason::SpoofedDestination
            | Reason::ConntrackFull
            | Reason::ConntrackCut
            | Reason::AclDeny
            | Reason::AclImplicitDeny
    )
}

/// The verdict of the decide stage; true admits.
#[inline(always)]
pub fn decide<C: EbpfContext>(ctx: &C) -> bool {
    let Some(facts) = SCRATCH.get_ptr(0) else {
        return false;
    };
    // SAFETY: this CPU's scratch slot, written by the inspect stage just before the tail call.
    let facts = unsafe { &*facts };
    let Some(policy) = Policy::of_interface(facts.generation, facts.ifindex) else {
        telemetry::count_unconfigured(facts.dir, Reason::NoConfig, facts.frame_len);
        return false;
    };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // Always initialised: a value left undefined on some path makes LLVM shift whatever the
    // register held, possibly a pointer, which the verifier rejects.
    let mut rule = RULE_ID_NONE;
    let mut acl_entry = RULE_ID_NONE;
    let outcome = match checks::before_tracking(facts, &policy) {
        Ok(None) => judge(facts, &policy, now, &mut rule, &mut acl_entry),
        Ok(Some(reason)) => Ok(reason),
        Err(reason) => Err(reason),
    };
    let flow = EventFlow {
        ifindex: facts.ifindex,
        dir: facts.dir,
        family: facts.family,
        proto: facts.proto,
        src: facts.src,
        dst: facts.dst,
        src_port: facts.src_port,
        dst_port: facts.dst_port,
        bytes: facts.frame_len,
    };
    let reason = verdict::reason_of(outcome);
    if reason.passes() {
        if rule != RULE_ID_NONE {
            telemetry::flow_admitted(&flow, reason, rule, facts.generation, now);
        }
        if facts.first_fragment != 0 {
            fragments::remember_first(facts, now);
        }
    } else if is_policy_decision(reason)
        && telemetry::flow_denied(&flow, reason, acl_entry, facts.generation, now)
        && reason == Reason::ConntrackFull
    {
        // Rare and worth a line in the agent's log (C6); rate-limited with the events.
        warn!(
            ctx,
            "conntrack allowance or table full on ifindex {}: new flow dropped", facts.ifindex
        );
    }
    verdict::finish(policy.iface.ifslot, facts.dir, reason, facts.frame_len)
}

/// The verdict: the network ACL inbound before the groups, outbound after them (N4). `rule`
/// receives the global id of the rule that admitted the packet, if a rule did (conntrack and
/// ICMP relations leave it alone); `acl_entry` that of the ACL entry that refused it.
#[inline(always)]
fn judge(
    facts: &PacketFacts,
    policy: &Policy,
    now: u64,
    rule: &mut u32,
    acl_entry: &mut u32,
) -> Outcome {
    let dir = facts.dir;
    let remote = if dir == DIR_INGRESS {
        &facts.src
    } else {
        &facts.dst
    };
    // The service of this very packet, replies included: the ACL is stateless (N3).
    let lookup = Lookup {
        dir,
        family: facts.family,
        peer: remote,
        proto: facts.proto,
        selector: selector_for(
            facts.proto,
            facts.dst_port,
            facts.icmp_type,
            facts.icmp_code,
        ),
    };
    policy::judge_acl(policy, &lookup);
    if dir == DIR_INGRESS {
        acl_judges(policy, acl_entry)?;
    }
    // Outbound, only what the groups admit meets the ACL; what it then refuses never left the
    // subnet, so the groups' judgement of it leaves no trace (see `judge_flow`).
    let reason = judge_flow(facts, policy, lookup, now, rule)?;
    if dir != DIR_INGRESS {
        acl_judges(policy, acl_entry)?;
    }
    Ok(reason)
}

/// Counts the hit of the ACL entry that judged the packet, and refuses what it denies.
#[inline(always)]
fn acl_judges(policy: &Policy, acl_entry: &mut u32) -> Result<(), Reason> {
    let (verdict, entry) = policy::acl_verdict();
    if entry != RULE_ID_NONE {
        telemetry::count_rule_hit(policy.slot, entry);
    }
    match verdict {
        ACL_PASSES => Ok(()),
        ACL_NO_ENTRY => Err(Reason::AclImplicitDeny),
        _ => {
            *acl_entry = entry;
            Err(Reason::AclDeny)
        }
    }
}

/// The groups' verdict. Where the ACL refuses the packet (outbound, after the groups),
/// nothing about an admission is written: no rule hit, no conntrack entry made or refreshed
/// (see `conntrack::track`); `policy::acl_passes` is read at each such write.
#[inline(always)]
fn judge_flow(
    facts: &PacketFacts,
    policy: &Policy,
    lookup: Lookup,
    now: u64,
    rule: &mut u32,
) -> Outcome {
    let dir = facts.dir;
    let proto = facts.proto;
    let selector = lookup.selector;
    let local = if dir == DIR_INGRESS {
        &facts.dst
    } else {
        &facts.src
    };
    let is_icmp = is_own_icmp(facts.family, proto);
    // The conntrack key is built only after the ICMP branch: built before it, it costs the
    // verifier twice the instructions on this stage.

    if is_icmp && !is_icmp_echo(proto, facts.icmp_type) {
        if facts.has_quoted != 0 && conntrack::is_tracked(&facts.quoted, policy.iface, now) {
            return Ok(Reason::RelatedIcmp);
        }
        // C7: ICMP messages other than echo are judged by the rules, one by one.
        let matched = policy::classify(policy, lookup).ok_or(Reason::NoRule)?;
        if policy::acl_passes() {
            *rule = count_hit(policy, dir, matched.rule);
        }
        return Ok(Reason::RuleUntrackedIcmp);
    }

    let (local_port, remote_port) = if is_icmp {
        (facts.echo_id, 0)
    } else if dir == DIR_INGRESS {
        (facts.dst_port, facts.src_port)
    } else {
        (facts.src_port, facts.dst_port)
    };
    let flow = Flow {
        key: CtKey {
            ifindex: facts.ifindex,
            family: facts.family,
            proto,
            _pad: [0; 2],
            local_addr: *local,
            remote_addr: *lookup.peer,
            local_port,
            remote_port,
        },
        dir,
        tcp_flags: facts.tcp_flags,
        tcp_seq: facts.tcp_seq,
        tcp_ack: facts.tcp_ack,
        selector,
        bytes: facts.frame_len,
    };

    if let Some(reason) = conntrack::track(&flow, policy, now)? {
        return Ok(reason);
    }

    let matched = policy::classify(policy, lookup).ok_or(Reason::NoRule)?;
    if policy::acl_passes() {
        *rule = count_hit(policy, dir, matched.rule);
    }
    // TCP is tracked from its SYN. Anything else a rule admits (a SYN-ACK, an ACK mid-stream,
    // a RST) passes on that rule alone: tracking it would make the reverse direction of an
    // untracked flow (C8) look like a new tracked flow and keep it alive past its rule.
    if proto == PROTO_TCP && facts.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN {
        return Ok(Reason::RuleNoEntry);
    }
    if matched.untracked {
        return Ok(Reason::Untracked);
    }
    conntrack::start(&flow, policy, *rule, now)?;
    Ok(Reason::NewFlow)
}

/// Counts a hit of the interface's rule `bit` in direction `dir`; returns its global id.
#[inline(always)]
fn count_hit(policy: &Policy, dir: u8, bit: u16) -> u32 {
    let rule = policy.rule_id(dir, bit);
    telemetry::count_rule_hit(policy.slot, rule);
    rule
}
