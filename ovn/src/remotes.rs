//! Several remotes of one database (the members of a RAFT cluster, as
//! `unix:a,tcp:10.0.0.2:6641,...`): which one to connect to.
//!
//! Every member serves reads and forwards writes, but a follower's copy may
//! lag the leader's, and a follower that lost its cluster answers nothing
//! new. Like `ovsdb-idl` (`--leader-only`, the default of `ovn-nbctl`), a
//! client with several remotes settles on the leader: a round over the
//! remotes skips members that are not leader of their clustered database,
//! and only when a whole round found none does it take a follower (better a
//! lagging view than none while a new leader is elected; the next
//! reconnection looks for the leader again).

use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::rpc::{Conn, Notify};
use crate::transport::Target;
use std::sync::Arc;

/// Parses one remote or a comma-separated list of them.
pub(crate) fn parse(s: &str) -> Result<Vec<Target>> {
    let list: Vec<Target> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(Target::parse)
        .collect::<Result<_>>()?;
    if list.is_empty() {
        return Err(Error::InvalidTarget(s.to_string()));
    }
    Ok(list)
}

/// Whether the server behind `conn` may be used without waiting for a
/// leader: it is leader (and connected to its cluster) for every clustered
/// database it serves. A standalone server always is.
pub(crate) async fn leads(conn: &Conn, timeout: Duration) -> Result<bool> {
    let reply = conn
        .request(
            "transact",
            json!(["_Server", {"op": "select", "table": "Database", "where": [],
                   "columns": ["name", "model", "leader", "connected"]}]),
            timeout,
            None,
        )
        .await?;
    Ok(leads_by_server_rows(&reply))
}

/// The decision of [`leads`] over the reply of its `_Server` select.
pub(crate) fn leads_by_server_rows(reply: &Value) -> bool {
    let rows = reply
        .get(0)
        .and_then(|r| r.get("rows"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    rows.iter().all(|row| {
        row.get("model").and_then(Value::as_str) != Some("clustered")
            || (row.get("leader") == Some(&Value::Bool(true))
                && row.get("connected") == Some(&Value::Bool(true)))
    })
}

/// One round over `targets` starting at `start`: the first leader, else
/// (when `settle_for_follower`) the first member that answered. Returns
/// the connection and the index of its remote.
pub(crate) async fn connect_round(
    targets: &[Target],
    start: usize,
    notify: &Notify,
    probe: Option<Duration>,
    timeout: Duration,
    settle_for_follower: bool,
) -> std::result::Result<(Arc<Conn>, usize), String> {
    let mut follower: Option<(Arc<Conn>, usize)> = None;
    let mut why = Vec::new();
    for k in 0..targets.len() {
        let i = (start + k) % targets.len();
        let t = &targets[i];
        let conn = match Conn::connect(t, notify.clone(), probe).await {
            Ok(c) => c,
            Err(e) => {
                why.push(format!("{t}: {e}"));
                continue;
            }
        };
        // One remote: nothing to choose between.
        if targets.len() == 1 {
            return Ok((conn, i));
        }
        match leads(&conn, timeout).await {
            Ok(true) => {
                if let Some((f, _)) = follower {
                    f.close();
                }
                return Ok((conn, i));
            }
            Ok(false) => {
                why.push(format!("{t}: not the leader"));
                if follower.is_none() {
                    follower = Some((conn, i));
                } else {
                    conn.close();
                }
            }
            Err(e) => {
                why.push(format!("{t}: {e}"));
                conn.close();
            }
        }
    }
    match follower {
        Some(f) if settle_for_follower => {
            tracing::warn!(remote = %targets[f.1], "no leader among the remotes; using a follower");
            Ok(f)
        }
        Some((f, _)) => {
            f.close();
            Err(why.join("; "))
        }
        None => Err(why.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_remotes_is_parsed_and_a_bad_one_refused() {
        assert_eq!(
            parse("unix:/a, tcp:127.0.0.1:6641").unwrap(),
            vec![
                Target::Unix("/a".into()),
                Target::Tcp("127.0.0.1:6641".into())
            ]
        );
        assert!(parse("unix:/a,nope").is_err());
        assert!(parse(" , ").is_err());
    }

    #[test]
    fn only_the_leader_of_a_clustered_database_leads() {
        let rows = |v: Value| json!([{"rows": v}]);
        assert!(leads_by_server_rows(&rows(json!([
            {"name": "_Server", "model": "standalone", "leader": true, "connected": true},
            {"name": "OVN_Northbound", "model": "clustered", "leader": true, "connected": true}
        ]))));
        assert!(!leads_by_server_rows(&rows(json!([
            {"name": "OVN_Northbound", "model": "clustered", "leader": false, "connected": true}
        ]))));
        assert!(!leads_by_server_rows(&rows(json!([
            {"name": "OVN_Northbound", "model": "clustered", "leader": true, "connected": false}
        ]))));
        assert!(leads_by_server_rows(&rows(json!([
            {"name": "OVN_Northbound", "model": "standalone", "leader": true, "connected": true}
        ]))));
    }
}
