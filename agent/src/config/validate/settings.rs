//! How an instance's interface is enforced: the attach mode, the host ingress hook, and the
//! connection-tracking timeouts and allowance (C5, C6).

use crate::{
    config::{
        diagnostic::Diagnostics,
        document::{Located, RawConntrack},
        messages::ValidationError,
    },
    model::{AttachMode, Conntrack, HostIngressHook},
};

pub(super) fn check_attach(
    raw: Option<&Located<String>>,
    diagnostics: &mut Diagnostics,
) -> Option<AttachMode> {
    let choices = [("port", AttachMode::Port), ("host", AttachMode::Host)];
    check_choice(raw, &choices, diagnostics, |value| {
        ValidationError::UnknownAttachMode { value }
    })
}

pub(super) fn check_host_ingress_hook(
    raw: Option<&Located<String>>,
    diagnostics: &mut Diagnostics,
) -> Option<HostIngressHook> {
    let choices = [("xdp", HostIngressHook::Xdp), ("tc", HostIngressHook::Tc)];
    check_choice(raw, &choices, diagnostics, |value| {
        ValidationError::UnknownHostIngressHook { value }
    })
}

/// One of `choices`, the first when nothing is written; `None` after reporting an unknown one.
fn check_choice<T: Copy>(
    raw: Option<&Located<String>>,
    choices: &[(&str, T)],
    diagnostics: &mut Diagnostics,
    unknown: impl FnOnce(String) -> ValidationError,
) -> Option<T> {
    let Some(raw) = raw else {
        return choices.first().map(|(_, default)| *default);
    };
    match choices.iter().find(|(name, _)| *name == raw.value) {
        Some((_, value)) => Some(*value),
        None => {
            diagnostics.error(&raw.at, unknown(raw.value.clone()));
            None
        }
    }
}

/// C5 and C6 ranges.
pub(super) fn check_conntrack(raw: &RawConntrack, diagnostics: &mut Diagnostics) -> Conntrack {
    let defaults = Conntrack::default();
    let mut in_range = |field: &'static str,
                        value: &Option<Located<i64>>,
                        (min, max): (i64, i64),
                        unit: &'static str,
                        default: u32| {
        let Some(value) = value else {
            return default;
        };
        match u32::try_from(value.value) {
            Ok(seconds) if (min..=max).contains(&value.value) => seconds,
            _ => {
                diagnostics.error(
                    &value.at,
                    ValidationError::ConntrackOutOfRange {
                        field,
                        min,
                        max,
                        unit,
                        value: value.value,
                    },
                );
                default
            }
        }
    };
    const SECONDS: &str = " seconds";
    Conntrack {
        tcp_established_timeout: in_range(
            "tcp_established_timeout",
            &raw.tcp_established_timeout,
            (60, 432_000),
            SECONDS,
            defaults.tcp_established_timeout,
        ),
        udp_timeout: in_range(
            "udp_timeout",
            &raw.udp_timeout,
            (30, 60),
            SECONDS,
            defaults.udp_timeout,
        ),
        udp_stream_timeout: in_range(
            "udp_stream_timeout",
            &raw.udp_stream_timeout,
            (60, 180),
            SECONDS,
            defaults.udp_stream_timeout,
        ),
        max_flows: in_range(
            "max_flows",
            &raw.max_flows,
            (1, 4_194_304),
            "",
            defaults.max_flows,
        ),
        cut_on_rule_removal: raw
            .cut_on_rule_removal
            .as_ref()
            .map_or(defaults.cut_on_rule_removal, |v| v.value),
    }
}
