//! Instances (interfaces sgwall enforces), members (addresses that only count for group
//! membership, G1) and lab clients: each claims its name and addresses, and the first two
//! attach groups.

use ipnet::IpNet;

use super::{
    addresses::{check_cidr, check_mac},
    checked::CheckedInstance,
    ids::{check_tags, id_or_derived},
    names::{Registry, owner_name},
    quotas,
    references::KnownGroups,
    settings::{check_attach, check_conntrack, check_host_ingress_hook},
};
use crate::{
    config::{
        diagnostic::Diagnostics,
        document::{RawInstance, RawLabClient, RawMember},
        messages::{ValidationError, ValidationWarning},
    },
    ids::{self, IdKind},
    model::{AttachMode, Conntrack, Instance, InterfaceMatch, LabClient, MacAddr, Member, Quotas},
};

pub(super) fn check_instance(
    raw: &RawInstance,
    known_groups: &KnownGroups,
    quotas: Quotas,
    registry: &mut Registry,
    diagnostics: &mut Diagnostics,
) -> Option<CheckedInstance> {
    diagnostics.unless_errors(|diagnostics| {
        let addresses = registry.claim_host(raw.name.as_ref(), raw.addresses.as_ref(), diagnostics);
        let mac = raw.mac.as_ref().map(|mac| check_mac(mac, diagnostics));
        let located = locate_interface(raw, mac.flatten(), registry, diagnostics);
        let attach = check_attach(raw.attach.as_ref(), diagnostics);
        let host_ingress_hook =
            check_host_ingress_hook(raw.host_ingress_hook.as_ref(), diagnostics);
        if let (Some(AttachMode::Port), Some(hook)) = (attach, &raw.host_ingress_hook) {
            diagnostics.warning(&hook.at, ValidationWarning::HostIngressHookIgnored);
        }
        let owner = owner_name("instance", raw.name.as_ref(), &raw.at);
        let security_groups = raw.security_groups.as_ref().map(|groups| {
            let attached = known_groups.check_attached(groups, &owner, diagnostics);
            let instance = raw.name.as_ref().map_or("", |name| name.value.as_str());
            quotas::check_attached_group_count(
                attached.len(),
                &groups.at,
                instance,
                quotas,
                diagnostics,
            );
            attached
        });
        let exempt: Vec<IpNet> = raw
            .exempt
            .iter()
            .filter_map(|cidr| check_cidr(cidr, diagnostics))
            .collect();
        let conntrack = match &raw.conntrack {
            Some(conntrack) => check_conntrack(conntrack, diagnostics),
            None => Conntrack::default(),
        };
        let id = id_or_derived(
            IdKind::NetworkInterface,
            raw.id.as_ref(),
            &raw.at,
            || ids::derived(IdKind::NetworkInterface, &owner),
            diagnostics,
        );
        let tags = check_tags(raw.tags.as_ref(), diagnostics);

        let (interface, interface_match) = located?;
        let attach = attach?;
        Some(CheckedInstance {
            instance: Instance {
                name: raw.name.as_ref()?.value.clone(),
                id: id.value.clone(),
                tags,
                interface,
                interface_match,
                mac: mac.unwrap_or(None),
                // I6 DECISION: on by default for ports, where the instance is a VM or a
                // container that may well ask for its address.
                dhcp: raw
                    .dhcp
                    .as_ref()
                    .map_or(attach == AttachMode::Port, |v| v.value),
                attach,
                host_ingress_hook: host_ingress_hook?,
                addresses: addresses?,
                security_groups: security_groups?,
                source_dest_check: raw.source_dest_check.as_ref().is_none_or(|v| v.value),
                related_icmp: raw.related_icmp.as_ref().is_some_and(|v| v.value),
                exempt,
                conntrack,
            },
            security_groups_at: raw.security_groups.as_ref()?.at.clone(),
            addresses_at: raw.addresses.as_ref()?.at.clone(),
            id,
        })
    })
}

/// How the instance's interface is found: by `interface` (a name or a pattern), by
/// `host_mac`, or by the guest's `mac` as libvirt gives it to the tap. Returns the interface
/// as the model holds it before it is found, and how to find it.
fn locate_interface(
    raw: &RawInstance,
    mac: Option<MacAddr>,
    registry: &mut Registry,
    diagnostics: &mut Diagnostics,
) -> Option<(String, InterfaceMatch)> {
    let host_mac = raw
        .host_mac
        .as_ref()
        .map(|raw| (raw, check_mac(raw, diagnostics)));
    let found = match (&raw.interface, host_mac) {
        (Some(_), Some((host_mac, _))) => {
            diagnostics.error(&host_mac.at, ValidationError::InterfaceAndHostMac);
            return None;
        }
        (Some(interface), None) => {
            let found = registry.claim_interface(interface, diagnostics)?;
            return Some((interface.value.clone(), found));
        }
        (None, Some((host_mac, parsed))) => {
            registry.claim_host_mac(parsed?, &host_mac.at, diagnostics)
        }
        (None, None) => match (mac, &raw.mac) {
            (Some(mac), Some(raw_mac)) => {
                registry.claim_host_mac(mac.libvirt_tap(), &raw_mac.at, diagnostics)
            }
            (None, Some(_)) => return None,
            (_, None) => {
                diagnostics.error(
                    &raw.at.child("interface", raw.at.span.clone()),
                    ValidationError::NoInterface,
                );
                return None;
            }
        },
    };
    Some((found.describe(""), found))
}

pub(super) fn check_member(
    raw: &RawMember,
    known_groups: &KnownGroups,
    registry: &mut Registry,
    diagnostics: &mut Diagnostics,
) -> Option<Member> {
    diagnostics.unless_errors(|diagnostics| {
        let addresses = registry.claim_host(raw.name.as_ref(), raw.addresses.as_ref(), diagnostics);
        let owner = owner_name("member", raw.name.as_ref(), &raw.at);
        let security_groups = raw
            .security_groups
            .as_ref()
            .map(|groups| known_groups.check_attached(groups, &owner, diagnostics));
        Some(Member {
            name: raw.name.as_ref()?.value.clone(),
            addresses: addresses?,
            security_groups: security_groups?,
        })
    })
}

pub(super) fn check_lab_client(
    raw: &RawLabClient,
    registry: &mut Registry,
    diagnostics: &mut Diagnostics,
) -> Option<LabClient> {
    diagnostics.unless_errors(|diagnostics| {
        let addresses = registry.claim_host(raw.name.as_ref(), raw.addresses.as_ref(), diagnostics);
        Some(LabClient {
            name: raw.name.as_ref()?.value.clone(),
            addresses: addresses?,
        })
    })
}
