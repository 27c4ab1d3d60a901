//! The checks every input gets before a policy sees it: a Hello's rack, a Step's node states,
//! STHs, GSTs (v1 and v2 forms), links, tasks and outcomes, each against the rack's size.

use super::{refuse, Refusal, MAX_NODES};
use malcolm_proto::bridge::{ErrorCode, GlobalStateView, Hello, Step, TaskOutcome};
use malcolm_proto::codec::PROTOCOL_V2;
use malcolm_proto::columns::{self, ColumnsError};
use malcolm_proto::heartbeat::HEARTBEAT_LEN;
use malcolm_proto::{sth_config, STH_BUCKETS};

/// Checks a Hello: env id, rack size, node ids in order, sane node specs, an STH we can read.
pub fn validate_hello(h: &Hello) -> Result<(), Refusal> {
    if h.env_id.is_empty() {
        return Err(refuse(
            ErrorCode::InvalidArgument,
            "Hello without an env_id",
        ));
    }
    let n = h.nodes.len();
    if n == 0 || n > MAX_NODES {
        return Err(refuse(
            ErrorCode::InvalidArgument,
            format!("rack of {n} nodes; the protocol supports 1..={MAX_NODES}"),
        ));
    }
    for (i, node) in h.nodes.iter().enumerate() {
        if node.node_id as usize != i {
            return Err(refuse(
                ErrorCode::InvalidNodeId,
                format!("nodes[{i}] has node_id {} (must be {i})", node.node_id),
            ));
        }
        if node.cores == 0 || !(node.speed.is_finite() && node.speed > 0.0) {
            return Err(refuse(
                ErrorCode::InvalidArgument,
                format!(
                    "node {i}: cores {} speed {} (need cores >= 1, speed > 0)",
                    node.cores, node.speed
                ),
            ));
        }
    }
    match &h.sth {
        Some(cfg) if *cfg == sth_config() => Ok(()),
        Some(cfg) => Err(refuse(
            ErrorCode::InvalidArgument,
            format!(
                "STH config {cfg:?} is not the one this agent reads ({:?})",
                sth_config()
            ),
        )),
        None => Err(refuse(
            ErrorCode::InvalidArgument,
            "Hello without an STH config",
        )),
    }
}

/// Checks a Step of protocol `version` against a rack of `n`: node states and their ids,
/// STH shapes, heartbeat ids, GSTs (shape, the version's form, the ids of their entries),
/// link and task and outcome node ids, and the task limit.
pub fn validate_step(step: &Step, n: usize, version: u32, max_tasks: usize) -> Result<(), Refusal> {
    if step.nodes.len() != n {
        return Err(refuse(
            ErrorCode::InvalidArgument,
            format!(
                "Step has {} node states for a rack of {n}",
                step.nodes.len()
            ),
        ));
    }
    if step.tasks.len() > max_tasks {
        return Err(refuse(
            ErrorCode::InvalidArgument,
            format!(
                "{} pending tasks in one Step (limit {max_tasks})",
                step.tasks.len()
            ),
        ));
    }
    if version < PROTOCOL_V2 && (!step.gst_tables.is_empty() || step.node_columns.is_some()) {
        return Err(refuse(
            ErrorCode::InvalidArgument,
            "Step.gst_tables and Step.node_columns are protocol v2 fields; this session speaks v1",
        ));
    }
    for (t, table) in step.gst_tables.iter().enumerate() {
        validate_gst(table, n, &format!("gst_tables[{t}]"))?;
    }
    for (i, ns) in step.nodes.iter().enumerate() {
        if ns.node_id as usize != i {
            return Err(refuse(
                ErrorCode::InvalidNodeId,
                format!("nodes[{i}] has node_id {} (must be {i} of {n})", ns.node_id),
            ));
        }
        if let Some(sth) = &ns.sth {
            if sth.buckets.len() != STH_BUCKETS {
                return Err(refuse(
                    ErrorCode::InvalidArgument,
                    format!(
                        "node {i}: STH with {} buckets (need {STH_BUCKETS})",
                        sth.buckets.len()
                    ),
                ));
            }
        }
        if let Some(hb) = &ns.heartbeat {
            if hb.node_id as usize != i {
                return Err(refuse(
                    ErrorCode::InvalidNodeId,
                    format!("node {i}: heartbeat fields name node {}", hb.node_id),
                ));
            }
        }
        if let Some(g) = &ns.gst {
            if version >= PROTOCOL_V2 {
                return Err(refuse(
                    ErrorCode::InvalidArgument,
                    format!("node {i}: an inline GST in a v2 Step (v2 uses Step.gst_tables)"),
                ));
            }
            validate_gst(g, n, &format!("node {i}: GST"))?;
        }
        if let Some(cols) = &step.node_columns {
            let t = columns::gst_table(cols, i);
            if t > step.gst_tables.len() {
                return Err(refuse(
                    ErrorCode::InvalidArgument,
                    format!(
                        "node {i}: gst_table {t} names a table the Step does not have ({} tables)",
                        step.gst_tables.len()
                    ),
                ));
            }
        }
    }
    if let Some(l) = step.links.iter().find(|l| l.node_id as usize >= n) {
        return Err(refuse(
            ErrorCode::InvalidNodeId,
            format!(
                "link {} names node {} in a rack of {n}",
                l.link_id, l.node_id
            ),
        ));
    }
    if let Some(t) = step.tasks.iter().find(|t| t.origin as usize >= n) {
        return Err(refuse(
            ErrorCode::InvalidNodeId,
            format!(
                "task {} has origin {} in a rack of {n}",
                t.task_id, t.origin
            ),
        ));
    }
    validate_outcome_nodes(&step.outcomes, n)
}

/// A v2 Step: its node columns (checked) expanded into `nodes`, reusing `spare`.
pub(super) fn expand_v2(
    step: &mut Step,
    n: usize,
    spare: &mut Vec<malcolm_proto::bridge::NodeState>,
) -> Result<(), Refusal> {
    if !step.nodes.is_empty() {
        return Err(refuse(
            ErrorCode::InvalidArgument,
            "a v2 Step carries node state in node_columns, not nodes",
        ));
    }
    let Some(cols) = &step.node_columns else {
        return Err(refuse(
            ErrorCode::InvalidArgument,
            "a v2 Step without node_columns",
        ));
    };
    step.nodes = std::mem::take(spare);
    columns::expand(cols, n, &mut step.nodes).map_err(|e| {
        let code = match e {
            ColumnsError::HeartbeatNode { .. } => ErrorCode::InvalidNodeId,
            ColumnsError::Length { .. } => ErrorCode::InvalidArgument,
        };
        refuse(code, e.to_string())
    })
}

/// A GST's shape (N heartbeats, N ages) and the sender id of every entry it holds.
fn validate_gst(g: &GlobalStateView, n: usize, what: &str) -> Result<(), Refusal> {
    if g.heartbeats.len() != n * HEARTBEAT_LEN || g.age_ns.len() != n {
        return Err(refuse(
            ErrorCode::InvalidArgument,
            format!(
                "{what} of {} bytes and {} ages (need {} and {n})",
                g.heartbeats.len(),
                g.age_ns.len(),
                n * HEARTBEAT_LEN
            ),
        ));
    }
    // Entry j holds node j's last heartbeat, whose first byte is its sender id.
    let wrong = g
        .age_ns
        .iter()
        .zip(g.heartbeats.chunks_exact(HEARTBEAT_LEN))
        .enumerate()
        .find(|&(j, (&age, hb))| age != u64::MAX && hb[0] as usize != j);
    match wrong {
        Some((j, (_, hb))) => Err(refuse(
            ErrorCode::InvalidNodeId,
            format!("{what}: entry {j} holds a heartbeat from node {}", hb[0]),
        )),
        None => Ok(()),
    }
}

pub(super) fn validate_outcome_nodes(outcomes: &[TaskOutcome], n: usize) -> Result<(), Refusal> {
    match outcomes
        .iter()
        .find(|o| o.node_id as usize >= n || o.origin as usize >= n)
    {
        Some(o) => Err(refuse(
            ErrorCode::InvalidNodeId,
            format!(
                "outcome of task {} names node {} / origin {} in a rack of {n}",
                o.task_id, o.node_id, o.origin
            ),
        )),
        None => Ok(()),
    }
}
