//! TPROXY mode's connection marks.

use super::builder::Builder;
use super::{Chain, Family, OUTBOUND_MARK, Table};

/// TPROXY's connection marks: keep Envoy's marked connections on the local route table, and do
/// not re-capture Envoy's own connections to the app.
#[allow(clippy::too_many_arguments)]
pub(super) fn tproxy_marks(
    b: &mut Builder,
    mark: &str,
    uids: &[String],
    gids: &[String],
    lo4: &str,
    lo6: &str,
    pass4: &str,
    pass6: &str,
) {
    use Chain::*;
    use Table::*;
    b.append(
        Mangle,
        Prerouting,
        &format!("-p tcp -m mark --mark {mark} -j CONNMARK --save-mark"),
        &format!("meta l4proto tcp mark {mark} counter ct mark set mark"),
    );
    b.append(
        Mangle,
        Output,
        &format!("-p tcp -o lo -m mark --mark {mark} -j RETURN"),
        &format!("oifname lo meta l4proto tcp mark {mark} counter return"),
    );
    for (ids, kind) in [(uids, "uid"), (gids, "gid")] {
        for id in ids {
            b.versioned(lo4, lo6, Mangle, Output, |lo, ip| {
                (
                    format!("! -d {lo} -p tcp -o lo -m owner --{kind}-owner {id} -j MARK --set-mark {OUTBOUND_MARK}"),
                    format!(
                        "oifname lo meta l4proto tcp {ip} daddr != {lo} sk{kind} {id} counter meta mark set {OUTBOUND_MARK}"
                    ),
                )
            });
        }
    }
    b.append(
        Mangle,
        Output,
        &format!("-p tcp -m connmark --mark {mark} -j CONNMARK --restore-mark"),
        &format!("meta l4proto tcp ct mark {mark} counter meta mark set ct mark"),
    );
    b.insert(
        Mangle,
        Inbound,
        1,
        &format!("-p tcp -m mark --mark {mark} -j RETURN"),
        &format!("meta l4proto tcp mark {mark} counter return"),
    );
    b.insert_v(
        Family::V4,
        Mangle,
        Inbound,
        2,
        &format!("-p tcp -s {pass4} -i lo -j RETURN"),
        &format!("iifname lo meta l4proto tcp ip saddr {pass4} counter return"),
    );
    b.insert_v(
        Family::V6,
        Mangle,
        Inbound,
        2,
        &format!("-p tcp -s {pass6} -i lo -j RETURN"),
        &format!("iifname lo meta l4proto tcp ip6 saddr {pass6} counter return"),
    );
    b.insert(
        Mangle,
        Inbound,
        3,
        &format!("-p tcp -i lo -m mark ! --mark {OUTBOUND_MARK} -j RETURN"),
        &format!("iifname lo meta l4proto tcp mark != {OUTBOUND_MARK} counter return"),
    );
}
