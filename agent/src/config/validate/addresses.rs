//! R5 CIDRs and host addresses: what parses, and the fix to suggest when it does not.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{diagnostic::Diagnostics, document::Located, messages::ValidationError};

/// R5: the CIDR parses and has no host bits.
pub(super) fn check_cidr(raw: &Located<String>, diagnostics: &mut Diagnostics) -> Option<IpNet> {
    match raw.value.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Some(net),
        Ok(net) => {
            diagnostics.error(
                &raw.at,
                ValidationError::CidrHostBits {
                    cidr: raw.value.clone(),
                    network: net.trunc().to_string(),
                },
            );
            None
        }
        Err(_) => {
            let error = match raw.value.parse::<IpAddr>() {
                Ok(address) => ValidationError::CidrWithoutPrefix {
                    cidr: raw.value.clone(),
                    prefix_len: if address.is_ipv4() { 32 } else { 128 },
                },
                Err(_) => ValidationError::InvalidCidr {
                    cidr: raw.value.clone(),
                },
            };
            diagnostics.error(&raw.at, error);
            None
        }
    }
}

/// A host address: no prefix, and one that can be an interface's own.
pub(super) fn check_address(
    raw: &Located<String>,
    diagnostics: &mut Diagnostics,
) -> Option<IpAddr> {
    match raw.value.parse::<IpAddr>() {
        Ok(address) if is_unicast(address) => Some(address),
        Ok(address) => {
            diagnostics.error(
                &raw.at,
                ValidationError::NotUnicastAddress {
                    address: address.to_string(),
                },
            );
            None
        }
        Err(_) => {
            let error = match raw.value.parse::<IpNet>() {
                Ok(net) => ValidationError::AddressWithPrefix {
                    address: raw.value.clone(),
                    host: net.addr().to_string(),
                },
                Err(_) => ValidationError::InvalidAddress {
                    address: raw.value.clone(),
                },
            };
            diagnostics.error(&raw.at, error);
            None
        }
    }
}

fn is_unicast(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// A unicast MAC address (`mac`, `host_mac`).
pub(super) fn check_mac(
    raw: &Located<String>,
    diagnostics: &mut Diagnostics,
) -> Option<crate::model::MacAddr> {
    match raw.value.parse::<crate::model::MacAddr>() {
        Ok(mac) if mac.0[0] & 1 == 0 && mac.0 != [0; 6] => Some(mac),
        Ok(_) => {
            diagnostics.error(
                &raw.at,
                ValidationError::NotUnicastMac {
                    value: raw.value.clone(),
                },
            );
            None
        }
        Err(reason) => {
            diagnostics.error(
                &raw.at,
                ValidationError::InvalidMac {
                    value: raw.value.clone(),
                    reason,
                },
            );
            None
        }
    }
}
