//! A decoder for the hot path: an `Envelope` carrying a `Step`, decoded into the previous
//! Step's allocations (tasks, outcomes, GST tables, node columns are refilled in place, not
//! reallocated), with one tight varint loop instead of prost's per-field dispatch. It reads
//! exactly the wire format prost reads and gives the same result (checked against prost on
//! random Steps); other bodies and v1's nested node states are handed to prost.

use crate::bridge::envelope::Body;
use crate::bridge::{
    Envelope, GlobalStateView, LinkState, NodeColumns, NodeState, PendingTask, Step, TaskOutcome,
};
use prost::Message;

/// Why bytes are not a well-formed envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

fn err<T>(what: &str) -> Result<T, WireError> {
    Err(WireError(what.to_string()))
}

/// A cursor over protobuf wire bytes.
struct Wire<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Wire<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self { b, p: 0 }
    }

    fn done(&self) -> bool {
        self.p >= self.b.len()
    }

    /// A varint; one- and two-byte ones (keys, ids, small numbers) take the short path.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        let (b, p) = (self.b, self.p);
        if let Some(&x) = b.get(p) {
            if x < 0x80 {
                self.p = p + 1;
                return Ok(x as u64);
            }
            if let Some(&y) = b.get(p + 1) {
                if y < 0x80 {
                    self.p = p + 2;
                    return Ok((x & 0x7f) as u64 | (y as u64) << 7);
                }
            }
        }
        self.varint_long()
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.b.get(self.p) else {
                return err("truncated varint");
            };
            self.p += 1;
            v |= ((byte & 0x7f) as u64) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        err("varint longer than 10 bytes")
    }

    #[inline]
    fn key(&mut self) -> Result<(u32, u8), WireError> {
        let k = self.varint()?;
        if k > u32::MAX as u64 || k >> 3 == 0 {
            return err("invalid field key");
        }
        Ok(((k >> 3) as u32, (k & 7) as u8))
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.p.checked_add(l))
            .filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return err("length-delimited field runs past the end");
        };
        let s = &self.b[self.p..end];
        self.p = end;
        Ok(s)
    }

    fn fixed64(&mut self) -> Result<u64, WireError> {
        let Some(s) = self.b.get(self.p..self.p + 8) else {
            return err("truncated fixed64");
        };
        self.p += 8;
        Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
    }

    fn skip(&mut self, wire_type: u8) -> Result<(), WireError> {
        match wire_type {
            0 => self.varint().map(|_| ()),
            1 => self.fixed64().map(|_| ()),
            2 => self.bytes().map(|_| ()),
            5 => {
                if self.p + 4 > self.b.len() {
                    return err("truncated fixed32");
                }
                self.p += 4;
                Ok(())
            }
            _ => err("unsupported wire type"),
        }
    }

    /// A varint field's value, checking the wire type.
    #[inline]
    fn uint(&mut self, wire_type: u8) -> Result<u64, WireError> {
        if wire_type != 0 {
            return err("a scalar field with the wrong wire type");
        }
        self.varint()
    }
}

fn prost_err(e: prost::DecodeError) -> WireError {
    WireError(e.to_string())
}

/// Decodes `bytes` into `env`, reusing the Step `env` holds (if it holds one) when the new
/// body is a Step. On error `env` is left in an unspecified but valid state.
pub fn merge_envelope(bytes: &[u8], env: &mut Envelope) -> Result<(), WireError> {
    let mut spare = match env.body.take() {
        Some(Body::Step(s)) => Some(s),
        _ => None,
    };
    env.protocol_version = 0;
    env.request_id = 0;
    let mut w = Wire::new(bytes);
    while !w.done() {
        let (field, wt) = w.key()?;
        match field {
            1 => env.protocol_version = w.uint(wt)? as u32,
            2 => env.request_id = w.uint(wt)?,
            11 => {
                if wt != 2 {
                    return err("Envelope.step with the wrong wire type");
                }
                let b = w.bytes()?;
                // A second occurrence merges into the Step of the first (protobuf rules);
                // otherwise start from an empty Step, reusing the previous one's buffers.
                let (mut s, reset) = match env.body.take() {
                    Some(Body::Step(s)) => (s, false),
                    _ => (spare.take().unwrap_or_default(), true),
                };
                merge_step(b, &mut s, reset)?;
                env.body = Some(Body::Step(s));
            }
            10 | 12 | 13 | 20..=23 => {
                if wt != 2 {
                    return err("Envelope body with the wrong wire type");
                }
                let b = w.bytes()?;
                // Rare bodies: prost, on a one-field envelope of their own.
                let mut one = Vec::with_capacity(b.len() + 6);
                prost::encoding::encode_key(
                    field,
                    prost::encoding::WireType::LengthDelimited,
                    &mut one,
                );
                prost::encoding::encode_varint(b.len() as u64, &mut one);
                one.extend_from_slice(b);
                let mut tmp = Envelope::default();
                if let Some(prev) = env.body.take() {
                    tmp.body = Some(prev);
                }
                tmp.merge(&one[..]).map_err(prost_err)?;
                env.body = tmp.body;
            }
            _ => w.skip(wt)?,
        }
    }
    Ok(())
}

/// Merges Step bytes into `s`; with `reset`, first empties `s` keeping its allocations.
fn merge_step(bytes: &[u8], s: &mut Step, reset: bool) -> Result<(), WireError> {
    let (mut n_tasks, mut n_outcomes, mut n_tables) = (0, 0, 0);
    if reset {
        s.sim_time_ns = 0;
        s.episode = 0;
        s.step_index = 0;
        s.nodes.clear();
        s.links.clear();
        if let Some(c) = &mut s.node_columns {
            for col in [
                &mut c.heartbeats,
                &mut c.sth_buckets,
                &mut c.sth_totals,
                &mut c.utilisation,
                &mut c.gst_table,
            ] {
                col.clear();
            }
        }
    } else {
        (n_tasks, n_outcomes, n_tables) = (s.tasks.len(), s.outcomes.len(), s.gst_tables.len());
    }
    let mut columns_seen = !reset && s.node_columns.is_some();
    let mut w = Wire::new(bytes);
    while !w.done() {
        let (field, wt) = w.key()?;
        match field {
            1 => s.sim_time_ns = w.uint(wt)?,
            2 => s.episode = w.uint(wt)?,
            3 => s.step_index = w.uint(wt)?,
            4 => s
                .nodes
                .push(NodeState::decode(len_field(&mut w, wt)?).map_err(prost_err)?),
            5 => s
                .links
                .push(LinkState::decode(len_field(&mut w, wt)?).map_err(prost_err)?),
            6 => {
                let b = len_field(&mut w, wt)?;
                let t = decode_task(b)?;
                put(&mut s.tasks, n_tasks, t);
                n_tasks += 1;
            }
            7 => {
                let b = len_field(&mut w, wt)?;
                let o = decode_outcome(b)?;
                put(&mut s.outcomes, n_outcomes, o);
                n_outcomes += 1;
            }
            8 => {
                let b = len_field(&mut w, wt)?;
                if n_tables == s.gst_tables.len() {
                    s.gst_tables.push(GlobalStateView::default());
                }
                let g = &mut s.gst_tables[n_tables];
                g.heartbeats.clear();
                g.age_ns.clear();
                merge_gst(b, g)?;
                n_tables += 1;
            }
            9 => {
                let b = len_field(&mut w, wt)?;
                let c = s.node_columns.get_or_insert_with(NodeColumns::default);
                if !columns_seen {
                    for col in [
                        &mut c.heartbeats,
                        &mut c.sth_buckets,
                        &mut c.sth_totals,
                        &mut c.utilisation,
                        &mut c.gst_table,
                    ] {
                        col.clear();
                    }
                }
                columns_seen = true;
                merge_columns(b, c)?;
            }
            _ => w.skip(wt)?,
        }
    }
    s.tasks.truncate(n_tasks);
    s.outcomes.truncate(n_outcomes);
    s.gst_tables.truncate(n_tables);
    if !columns_seen {
        s.node_columns = None;
    }
    Ok(())
}

/// Writes `v` at index `i` of `vec` (which holds at least `i` items), reusing the slot.
fn put<T>(vec: &mut Vec<T>, i: usize, v: T) {
    if i < vec.len() {
        vec[i] = v;
    } else {
        vec.push(v);
    }
}

fn len_field<'a>(w: &mut Wire<'a>, wt: u8) -> Result<&'a [u8], WireError> {
    if wt != 2 {
        return err("a message field with the wrong wire type");
    }
    w.bytes()
}

fn decode_task(b: &[u8]) -> Result<PendingTask, WireError> {
    let mut t = PendingTask::default();
    let mut w = Wire::new(b);
    while !w.done() {
        let (field, wt) = w.key()?;
        match field {
            1 => t.task_id = w.uint(wt)?,
            2 => t.origin = w.uint(wt)? as u32,
            3 => t.size_bytes = w.uint(wt)? as u32,
            4 => t.service_estimate_ns = w.uint(wt)?,
            5 => t.deadline_ns = w.uint(wt)?,
            6 => t.arrival_ns = w.uint(wt)?,
            7 => t.class = w.uint(wt)? as u32,
            _ => w.skip(wt)?,
        }
    }
    Ok(t)
}

fn decode_outcome(b: &[u8]) -> Result<TaskOutcome, WireError> {
    let mut o = TaskOutcome::default();
    let mut w = Wire::new(b);
    while !w.done() {
        let (field, wt) = w.key()?;
        match field {
            1 => o.task_id = w.uint(wt)?,
            2 => o.node_id = w.uint(wt)? as u32,
            3 => o.origin = w.uint(wt)? as u32,
            4 => o.kind = w.uint(wt)? as i32,
            5 => o.arrival_ns = w.uint(wt)?,
            6 => o.finish_ns = w.uint(wt)?,
            7 => o.deadline_ns = w.uint(wt)?,
            8 => o.latency_ns = w.uint(wt)?,
            9 => o.class = w.uint(wt)? as u32,
            10 => o.decided_at_step = w.uint(wt)?,
            _ => w.skip(wt)?,
        }
    }
    Ok(o)
}

fn merge_gst(b: &[u8], g: &mut GlobalStateView) -> Result<(), WireError> {
    let mut w = Wire::new(b);
    while !w.done() {
        let (field, wt) = w.key()?;
        match (field, wt) {
            (1, 2) => {
                // A repeated occurrence of a bytes field replaces it (protobuf rules).
                g.heartbeats.clear();
                g.heartbeats.extend_from_slice(w.bytes()?);
            }
            // Packed (the proto3 default) or one value per key: both are valid encodings.
            (2, 2) => {
                let mut p = Wire::new(w.bytes()?);
                while !p.done() {
                    g.age_ns.push(p.varint()?);
                }
            }
            (2, 0) => g.age_ns.push(w.varint()?),
            (1 | 2, _) => return err("GlobalStateView field with the wrong wire type"),
            _ => w.skip(wt)?,
        }
    }
    Ok(())
}

fn merge_columns(b: &[u8], c: &mut NodeColumns) -> Result<(), WireError> {
    let mut w = Wire::new(b);
    while !w.done() {
        let (field, wt) = w.key()?;
        let col = match field {
            1 => &mut c.heartbeats,
            2 => &mut c.sth_buckets,
            3 => &mut c.sth_totals,
            4 => &mut c.utilisation,
            5 => &mut c.gst_table,
            _ => {
                w.skip(wt)?;
                continue;
            }
        };
        if wt != 2 {
            return err("NodeColumns field with the wrong wire type");
        }
        // A repeated occurrence of a bytes field replaces it (protobuf rules).
        col.clear();
        col.extend_from_slice(w.bytes()?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::{Close, HeartbeatFields, Hello, Sth};
    use crate::codec::envelope_v;

    /// A Step with every field set from `seed` (v1 nodes, v2 columns and tables at once:
    /// the decoder does not judge, it decodes).
    fn step(seed: u64) -> Step {
        let r = |k: u64| {
            seed.wrapping_mul(6364136223846793005)
                .wrapping_add(k * 1442695040888963407)
                >> 20
        };
        Step {
            sim_time_ns: r(1),
            episode: r(2) % 5,
            step_index: r(3),
            nodes: (0..(seed % 4) as u32)
                .map(|i| NodeState {
                    node_id: i,
                    sth: Some(Sth {
                        buckets: vec![i; 16],
                        total_tasks: i,
                        min_slack_us: -(i as i64),
                        sum_load_us: r(i as u64),
                    }),
                    heartbeat: Some(HeartbeatFields {
                        node_id: i,
                        queue_len: 3,
                        ..Default::default()
                    }),
                    gst: None,
                    utilisation: 0.5,
                })
                .collect(),
            links: (0..seed % 3)
                .map(|k| LinkState {
                    link_id: k as u32,
                    queue_bytes: r(k),
                    ..Default::default()
                })
                .collect(),
            tasks: (0..seed % 7)
                .map(|k| PendingTask {
                    task_id: r(k),
                    origin: k as u32,
                    size_bytes: 64,
                    service_estimate_ns: r(k + 9),
                    deadline_ns: r(k + 10),
                    arrival_ns: r(k + 11),
                    class: (k % 2) as u32,
                })
                .collect(),
            outcomes: (0..seed % 5)
                .map(|k| TaskOutcome {
                    task_id: r(k + 20),
                    node_id: 1,
                    origin: 2,
                    kind: (k % 4) as i32,
                    arrival_ns: r(k),
                    finish_ns: r(k + 1),
                    deadline_ns: r(k + 2),
                    latency_ns: r(k + 3),
                    class: 1,
                    decided_at_step: k,
                })
                .collect(),
            gst_tables: (0..seed % 3)
                .map(|k| GlobalStateView {
                    heartbeats: vec![k as u8; 32],
                    age_ns: vec![u64::MAX, r(k)],
                })
                .collect(),
            node_columns: seed.is_multiple_of(2).then(|| NodeColumns {
                heartbeats: vec![1; 16],
                sth_buckets: vec![2; 64],
                sth_totals: vec![3; 20],
                utilisation: vec![4; 8],
                gst_table: vec![seed as u8, 0],
            }),
        }
    }

    #[test]
    fn decodes_as_prost_does_and_reuses_the_previous_step() {
        let mut env = Envelope::default();
        for seed in 0..200u64 {
            let want = envelope_v(2, seed, Body::Step(step(seed)));
            let bytes = want.encode_to_vec();
            merge_envelope(&bytes, &mut env).unwrap();
            assert_eq!(env, want, "seed {seed}");
            assert_eq!(Envelope::decode(&bytes[..]).unwrap(), want);
        }
        // Other bodies go through prost.
        for body in [
            Body::Hello(Hello {
                env_id: "x".into(),
                ..Default::default()
            }),
            Body::Close(Close::default()),
        ] {
            let want = envelope_v(1, 3, body);
            merge_envelope(&want.encode_to_vec(), &mut env).unwrap();
            assert_eq!(env, want);
        }
    }

    #[test]
    fn malformed_bytes_are_errors_like_prost_says() {
        let good = envelope_v(2, 5, Body::Step(step(6))).encode_to_vec();
        let mut env = Envelope::default();
        // Every truncation of a valid message: prost and this decoder agree on failure.
        for cut in 0..good.len() {
            let fast = merge_envelope(&good[..cut], &mut env).is_ok();
            let slow = Envelope::decode(&good[..cut]).is_ok();
            assert_eq!(fast, slow, "cut at {cut}");
        }
        for garbage in [&[0xff; 12][..], &[0x5a, 0xff, 0xff, 0xff, 0x0f], &[0x0b]] {
            assert!(merge_envelope(garbage, &mut env).is_err());
            assert!(Envelope::decode(garbage).is_err());
        }
    }
}
