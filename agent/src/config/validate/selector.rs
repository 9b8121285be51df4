//! R3: the protocol of a rule, and what its port part means for that protocol: a port range
//! for tcp and udp, a type and code for icmp and icmpv6, nothing (with a warning if written)
//! for the rest.

use crate::{
    config::{
        diagnostic::Diagnostics,
        document::{Located, RawService, Scalar},
        messages::{ValidationError, ValidationWarning},
    },
    model::{PortRange, Protocol},
};

/// R3: names, `-1`, numbers and numeric strings; 6/17/1/58 become their names.
pub(super) fn check_protocol(
    raw: &Located<Scalar>,
    diagnostics: &mut Diagnostics,
) -> Option<Protocol> {
    let number = match &raw.value {
        Scalar::Text(text) => match text.as_str() {
            "tcp" => return Some(Protocol::Tcp),
            "udp" => return Some(Protocol::Udp),
            "icmp" => return Some(Protocol::Icmp),
            "icmpv6" => return Some(Protocol::Icmpv6),
            "all" | "-1" => return Some(Protocol::All),
            digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse::<i64>().unwrap_or(i64::MAX)
            }
            _ => {
                diagnostics.error(
                    &raw.at,
                    ValidationError::UnknownProtocol {
                        protocol: text.clone(),
                    },
                );
                return None;
            }
        },
        Scalar::Integer(number) => *number,
    };
    if number == -1 {
        return Some(Protocol::All);
    }
    match u8::try_from(number) {
        Ok(number) => Some(Protocol::from_number(number)),
        Err(_) => {
            diagnostics.error(
                &raw.at,
                ValidationError::ProtocolNumberOutOfRange { number },
            );
            None
        }
    }
}

/// R3: what the port part of a rule or ACL entry means depends on the protocol.
pub(super) fn check_selector(
    raw: &RawService,
    protocol: Protocol,
    diagnostics: &mut Diagnostics,
) -> Option<PortRange> {
    diagnostics.unless_errors(|diagnostics| match protocol {
        Protocol::Tcp | Protocol::Udp => {
            reject_icmp_fields(raw, protocol, diagnostics);
            match &raw.ports {
                Some(ports) => check_ports(ports, diagnostics),
                // Written but of the wrong type: already reported.
                None if raw.has("ports") => None,
                None => {
                    diagnostics.error(
                        &raw.at.child("ports", raw.at.span.clone()),
                        ValidationError::PortsRequired {
                            protocol: protocol.to_string(),
                        },
                    );
                    None
                }
            }
        }
        Protocol::Icmp | Protocol::Icmpv6 => {
            if let Some(ports) = &raw.ports {
                diagnostics.error(
                    &ports.at,
                    ValidationError::PortsNotAllowedForIcmp {
                        protocol: protocol.to_string(),
                    },
                );
            }
            check_icmp(raw, diagnostics)
        }
        Protocol::All | Protocol::Number(_) => {
            reject_icmp_fields(raw, protocol, diagnostics);
            if let Some(ports) = &raw.ports {
                diagnostics.warning(
                    &ports.at,
                    ValidationWarning::PortsIgnored {
                        protocol: protocol.to_string(),
                    },
                );
            }
            Some(PortRange::Any)
        }
    })
}

fn reject_icmp_fields(raw: &RawService, protocol: Protocol, diagnostics: &mut Diagnostics) {
    let fields = [("icmp_type", &raw.icmp_type), ("icmp_code", &raw.icmp_code)];
    for (field, value) in fields {
        if let Some(value) = value {
            diagnostics.error(
                &value.at,
                ValidationError::IcmpFieldForOtherProtocol {
                    field,
                    protocol: protocol.to_string(),
                },
            );
        }
    }
}

/// R3: `"N"`, `"A-B"` or an integer, within 0-65535 and ordered.
fn check_ports(raw: &Located<Scalar>, diagnostics: &mut Diagnostics) -> Option<PortRange> {
    let port = |value: i64, diagnostics: &mut Diagnostics| match u16::try_from(value) {
        Ok(port) => Some(port),
        Err(_) => {
            diagnostics.error(&raw.at, ValidationError::PortOutOfRange { port: value });
            None
        }
    };
    let (from, to) = match &raw.value {
        Scalar::Integer(value) => {
            let single = port(*value, diagnostics)?;
            (single, single)
        }
        Scalar::Text(text) => {
            let Some((from, to)) = parse_port_text(text) else {
                diagnostics.error(
                    &raw.at,
                    ValidationError::InvalidPorts {
                        ports: text.clone(),
                    },
                );
                return None;
            };
            let from_port = port(from, diagnostics);
            // "N" is one port: one message when it is out of range, not one per end.
            let to_port = if to == from {
                from_port
            } else {
                port(to, diagnostics)
            };
            (from_port?, to_port?)
        }
    };
    if from > to {
        diagnostics.error(
            &raw.at,
            ValidationError::ReversedPortRange {
                from: u32::from(from),
                to: u32::from(to),
            },
        );
        return None;
    }
    Some(PortRange::Ports { from, to })
}

/// `"N"` or `"A-B"` with decimal digits only; range checks are the caller's.
fn parse_port_text(text: &str) -> Option<(i64, i64)> {
    let number = |digits: &str| {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Too many digits to be a port: report it as out of range rather than invalid.
        Some(digits.parse::<i64>().unwrap_or(i64::MAX))
    };
    match text.split_once('-') {
        Some((from, to)) => Some((number(from)?, number(to)?)),
        None => {
            let single = number(text)?;
            Some((single, single))
        }
    }
}

/// R3: type and code, -1 meaning any; a code needs a type.
fn check_icmp(raw: &RawService, diagnostics: &mut Diagnostics) -> Option<PortRange> {
    let mut valid = true;
    let mut value = |field: &'static str, raw: &Option<Located<i64>>| -> Option<u8> {
        let raw = raw.as_ref()?;
        if raw.value == -1 {
            return None;
        }
        match u8::try_from(raw.value) {
            Ok(value) => Some(value),
            Err(_) => {
                diagnostics.error(
                    &raw.at,
                    ValidationError::IcmpValueOutOfRange {
                        field,
                        value: raw.value,
                    },
                );
                valid = false;
                None
            }
        }
    };
    let icmp_type = value("icmp_type", &raw.icmp_type);
    let code = value("icmp_code", &raw.icmp_code);
    let type_is_any = match &raw.icmp_type {
        Some(icmp_type) => icmp_type.value == -1,
        // A type of the wrong type is reported already; do not blame the code as well.
        None => !raw.has("icmp_type"),
    };
    if let (Some(code), true) = (code, type_is_any) {
        if let Some(at) = raw.icmp_code.as_ref().map(|c| &c.at) {
            diagnostics.error(
                at,
                ValidationError::IcmpCodeWithoutType {
                    code: i64::from(code),
                },
            );
        }
        valid = false;
    }
    valid.then_some(PortRange::Icmp { icmp_type, code })
}
