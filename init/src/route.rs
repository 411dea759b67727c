//! TPROXY policy routing: packets marked by TPROXY are routed to the local host through a
//! dedicated table (`ip rule add fwmark MARK lookup TABLE`, `ip route add local default dev lo
//! table TABLE`). Idempotent: the rule is added only when missing, the route is replaced.

use crate::backend::{ApplyError, run_checked};
use crate::command::{Cmd, Runner};
use crate::rules::Family;

fn flag(family: Family) -> &'static str {
    match family {
        Family::V4 => "-4",
        Family::V6 => "-6",
    }
}

fn has_rule(runner: &dyn Runner, family: Family, mark: u32, table: u32) -> Result<bool, ApplyError> {
    let out = run_checked(runner, &Cmd::new("ip", &[flag(family), "rule", "show"]))?;
    let want = format!("fwmark {mark:#x} lookup {table}");
    Ok(out.stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ").contains(&want)))
}

/// Installs the TPROXY rule and route for `families`, once.
pub fn setup(runner: &dyn Runner, families: &[Family], mark: u32, table: u32) -> Result<(), ApplyError> {
    let (m, t) = (mark.to_string(), table.to_string());
    for family in families {
        if !has_rule(runner, *family, mark, table)? {
            run_checked(runner, &Cmd::new("ip", &[flag(*family), "rule", "add", "fwmark", &m, "lookup", &t]))?;
        }
        run_checked(
            runner,
            &Cmd::new("ip", &[flag(*family), "route", "replace", "local", "default", "dev", "lo", "table", &t]),
        )?;
    }
    Ok(())
}

/// Removes the TPROXY rule (every copy) and the routes of its table, in both families.
pub fn cleanup(runner: &dyn Runner, mark: u32, table: u32) -> Result<(), ApplyError> {
    let (m, t) = (mark.to_string(), table.to_string());
    for family in [Family::V4, Family::V6] {
        for _ in 0..16 {
            if !has_rule(runner, family, mark, table)? {
                break;
            }
            run_checked(runner, &Cmd::new("ip", &[flag(family), "rule", "del", "fwmark", &m, "lookup", &t]))?;
        }
        // `route show` fails when the table was never created: nothing to flush then.
        let routes = runner.run(&Cmd::new("ip", &[flag(family), "route", "show", "table", &t]));
        if routes.is_ok_and(|r| r.success() && !r.stdout.trim().is_empty()) {
            run_checked(runner, &Cmd::new("ip", &[flag(family), "route", "flush", "table", &t]))?;
        }
    }
    Ok(())
}
