//! Protocol v2's node columns (`NodeColumns`): the fresh state of every node as fixed-width
//! little-endian records, packed from and expanded into the v1 `NodeState`s. Expanding reuses
//! the allocations of the previous Step's node states, so a session pays no allocation per
//! node and no nested-message decoding.

use crate::bridge::{HeartbeatFields, NodeColumns, NodeState, Sth};
use crate::heartbeat::{Heartbeat, HEARTBEAT_LEN};
use crate::sth::STH_BUCKETS;

/// Bytes per node of `sth_buckets`.
pub const BUCKETS_WIDTH: usize = 4 * STH_BUCKETS;
/// Bytes per node of `sth_totals`: u32 total_tasks, i64 min_slack_us, u64 sum_load_us.
pub const TOTALS_WIDTH: usize = 20;
/// Bytes per node of `utilisation`.
pub const UTILISATION_WIDTH: usize = 8;
/// Bytes per node of `gst_table`.
pub const GST_TABLE_WIDTH: usize = 2;

/// Why columns do not describe a rack of N nodes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnsError {
    #[error("node_columns.{column} has {got} bytes; a rack of {nodes} needs {want}")]
    Length {
        column: &'static str,
        got: usize,
        want: usize,
        nodes: usize,
    },
    #[error("node_columns.heartbeats entry {index} names node {named}")]
    HeartbeatNode { index: usize, named: u8 },
}

/// Packs `nodes` (node-id order) and each node's 1-based GST table (0: none) into `out`.
pub fn pack(nodes: &[NodeState], gst_table: &[u16], out: &mut NodeColumns) {
    let n = nodes.len();
    for col in [
        &mut out.heartbeats,
        &mut out.sth_buckets,
        &mut out.sth_totals,
        &mut out.utilisation,
        &mut out.gst_table,
    ] {
        col.clear();
    }
    out.heartbeats.reserve(n * HEARTBEAT_LEN);
    out.sth_buckets.reserve(n * BUCKETS_WIDTH);
    out.sth_totals.reserve(n * TOTALS_WIDTH);
    for (i, node) in nodes.iter().enumerate() {
        let hb = node
            .heartbeat
            .as_ref()
            .map_or_else(Heartbeat::default, Heartbeat::from_fields);
        out.heartbeats.extend_from_slice(&hb.encode());
        let mut buckets = [0u32; STH_BUCKETS];
        let (mut total, mut min_slack, mut sum_load) = (0u32, 0i64, 0u64);
        if let Some(s) = &node.sth {
            for (b, v) in buckets.iter_mut().zip(&s.buckets) {
                *b = *v;
            }
            (total, min_slack, sum_load) = (s.total_tasks, s.min_slack_us, s.sum_load_us);
        }
        for b in buckets {
            out.sth_buckets.extend_from_slice(&b.to_le_bytes());
        }
        out.sth_totals.extend_from_slice(&total.to_le_bytes());
        out.sth_totals.extend_from_slice(&min_slack.to_le_bytes());
        out.sth_totals.extend_from_slice(&sum_load.to_le_bytes());
        out.utilisation
            .extend_from_slice(&node.utilisation.to_le_bytes());
        let t = gst_table.get(i).copied().unwrap_or(0);
        out.gst_table.extend_from_slice(&t.to_le_bytes());
    }
}

/// Checks that `cols` describe a rack of `n` nodes: every column's length, and that heartbeat
/// entry i was sent by node i.
pub fn check(cols: &NodeColumns, n: usize) -> Result<(), ColumnsError> {
    for (column, got, width) in [
        ("heartbeats", cols.heartbeats.len(), HEARTBEAT_LEN),
        ("sth_buckets", cols.sth_buckets.len(), BUCKETS_WIDTH),
        ("sth_totals", cols.sth_totals.len(), TOTALS_WIDTH),
        ("utilisation", cols.utilisation.len(), UTILISATION_WIDTH),
        ("gst_table", cols.gst_table.len(), GST_TABLE_WIDTH),
    ] {
        if got != n * width {
            return Err(ColumnsError::Length {
                column,
                got,
                want: n * width,
                nodes: n,
            });
        }
    }
    match cols
        .heartbeats
        .chunks_exact(HEARTBEAT_LEN)
        .enumerate()
        .find(|(i, hb)| hb[0] as usize != *i)
    {
        Some((index, hb)) => Err(ColumnsError::HeartbeatNode {
            index,
            named: hb[0],
        }),
        None => Ok(()),
    }
}

/// Node `i`'s 1-based GST table index (0: none); 0 when `i` is outside the columns.
pub fn gst_table(cols: &NodeColumns, i: usize) -> usize {
    cols.gst_table
        .get(GST_TABLE_WIDTH * i..GST_TABLE_WIDTH * (i + 1))
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize)
}

/// Expands checked columns of `n` nodes into `out` (node-id order), reusing the node states
/// and histograms already there. The GSTs stay in the Step's tables (no `gst` is set).
pub fn expand(cols: &NodeColumns, n: usize, out: &mut Vec<NodeState>) -> Result<(), ColumnsError> {
    check(cols, n)?;
    out.truncate(n);
    out.resize_with(n, NodeState::default);
    let rows = cols
        .heartbeats
        .chunks_exact(HEARTBEAT_LEN)
        .zip(cols.sth_buckets.chunks_exact(BUCKETS_WIDTH))
        .zip(cols.sth_totals.chunks_exact(TOTALS_WIDTH))
        .zip(cols.utilisation.chunks_exact(UTILISATION_WIDTH));
    for (i, (node, (((hb, buckets), totals), util))) in out.iter_mut().zip(rows).enumerate() {
        node.node_id = i as u32;
        node.gst = None;
        let f = node.heartbeat.get_or_insert_with(HeartbeatFields::default);
        Heartbeat::decode(hb)
            .expect("a 16-byte chunk")
            .write_fields(f);
        let s = node.sth.get_or_insert_with(Sth::default);
        s.buckets.clear();
        s.buckets.extend(
            buckets
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        s.total_tasks = u32::from_le_bytes(totals[0..4].try_into().expect("4 bytes"));
        s.min_slack_us = i64::from_le_bytes(totals[4..12].try_into().expect("8 bytes"));
        s.sum_load_us = u64::from_le_bytes(totals[12..20].try_into().expect("8 bytes"));
        node.utilisation = f64::from_le_bytes(util.try_into().expect("8 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u32) -> NodeState {
        NodeState {
            node_id: i,
            sth: Some(Sth {
                buckets: (0..16).map(|b| b * 7 + i).collect(),
                total_tasks: 100 + i,
                min_slack_us: -5 - i as i64,
                sum_load_us: 1 << 40,
            }),
            heartbeat: Some(HeartbeatFields {
                node_id: i,
                flags: 1,
                load_factor_milli: 1_234,
                slack_p10_us: -30,
                slack_p50_us: 400,
                queue_len: 9,
                policy_version: 77,
            }),
            gst: None,
            utilisation: 0.25 * i as f64,
        }
    }

    #[test]
    fn columns_round_trip_node_states_and_name_tables() {
        let nodes: Vec<NodeState> = (0..5).map(node).collect();
        let mut cols = NodeColumns::default();
        pack(&nodes, &[0, 1, 1, 2, 0], &mut cols);
        assert_eq!(cols.sth_totals.len(), 5 * TOTALS_WIDTH);
        let mut out = vec![NodeState::default(); 9];
        expand(&cols, 5, &mut out).unwrap();
        assert_eq!(out, nodes);
        assert_eq!(
            (0..5).map(|i| gst_table(&cols, i)).collect::<Vec<_>>(),
            vec![0, 1, 1, 2, 0]
        );
        assert_eq!(gst_table(&cols, 9), 0);
        // Wrong rack size, wrong sender id.
        assert!(matches!(
            expand(&cols, 4, &mut out),
            Err(ColumnsError::Length {
                column: "heartbeats",
                ..
            })
        ));
        cols.heartbeats[16 * 3] = 9;
        assert_eq!(
            check(&cols, 5),
            Err(ColumnsError::HeartbeatNode { index: 3, named: 9 })
        );
    }
}
