//! The agent's side of the loop: building a `Step` (pending tasks, node states, GST views,
//! uplinks; v1 and v2 layouts) and applying the `Placement` that answers it.

use super::{Ev, NodeView, RackSim};
use crate::engine::PRIO_NORMAL;
use crate::error::SimError;
use malcolm_proto::bridge::{
    self, GlobalStateView, HeartbeatFields, NodeState, PendingTask, Placement, Step,
};
use malcolm_proto::heartbeat::rho_of_tasks;
use malcolm_proto::Heartbeat;

impl RackSim {
    /// Each node's uplink (NIC -> ToR) as the Step's `links` (link id `2 * node`, the id the
    /// OMNeT++ coordinator gives uplinks): bytes queued or being serialised now, the rate sent
    /// since the previous Step. The ideal network has no PFC, ECN, drops, nor downlink queues,
    /// so those fields are false/0 and no downlinks are listed.
    pub(super) fn fill_uplinks(&mut self, step: &mut Step) {
        let now = self.now;
        let dt = now.saturating_sub(self.last_step_time);
        for i in 0..self.n {
            let fifo = &mut self.uplink_fifo[i];
            while let Some(&(_, end, bytes)) = fifo.front() {
                if end > now {
                    break;
                }
                self.uplink_sent[i] += bytes as u64;
                fifo.pop_front();
            }
            // Bytes not on the wire yet; the one being sent counts by the part left.
            let queue_bytes: u64 = fifo
                .iter()
                .map(|&(start, end, bytes)| {
                    if start >= now {
                        bytes as u64
                    } else {
                        (bytes as u64 * (end - now)).div_ceil(end - start)
                    }
                })
                .sum();
            let in_flight: u64 = fifo.iter().map(|&(_, _, b)| b as u64).sum();
            let sent = self.uplink_sent[i] + (in_flight - queue_bytes);
            let tx_rate_bps = if dt > 0 {
                (sent - self.uplink_sent_at_step[i]) as f64 * 8e9 / dt as f64
            } else {
                0.0
            };
            self.uplink_sent_at_step[i] = sent;
            step.links.push(bridge::LinkState {
                link_id: 2 * i as u32,
                node_id: i as u32,
                uplink: true,
                tx_rate_bps,
                queue_bytes,
                ..Default::default()
            });
        }
    }

    pub(super) fn build_step(&mut self) -> Step {
        let now = self.now;
        let n = self.n;
        let mut step = self.spare_step.take().unwrap_or_default();
        self.gst_pool.append(&mut step.gst_tables);
        if step.nodes.is_empty() {
            step.nodes = std::mem::take(&mut self.spare_nodes);
        }
        step.sim_time_ns = now;
        step.episode = self.episode;
        step.step_index = self.step_index;
        step.links.clear();
        self.fill_uplinks(&mut step);
        step.tasks.clear();
        for &h in &self.outstanding {
            let t = self.tasks.get(h);
            self.is_origin[t.origin as usize] = true;
            step.tasks.push(PendingTask {
                task_id: t.id,
                origin: t.origin,
                size_bytes: t.size_bytes,
                service_estimate_ns: t.estimate_ns,
                deadline_ns: t.deadline_ns,
                arrival_ns: t.arrival_ns,
                class: t.class,
            });
        }
        step.outcomes.clear();
        std::mem::swap(&mut step.outcomes, &mut self.outcomes);
        step.nodes.truncate(n);
        step.nodes.resize_with(n, NodeState::default);
        let dt = now.saturating_sub(self.last_step_time);
        // One division per Step, not per node.
        let inv_dt = if dt == 0 { 0.0 } else { 1.0 / dt as f64 };
        for i in 0..n {
            let node = &self.nodes[i];
            let fresh = self.views[i].as_ref().is_some_and(|v| {
                v.version == node.version()
                    && v.hb.reserved == self.policy_version[i]
                    && now < v.valid_until
            });
            if !fresh {
                let (sth, valid_until) = node.sth_until(now);
                let rho = rho_of_tasks(node.tasks_in_system() as u64, node.spec.cores);
                let hb = Heartbeat::from_sth(
                    i as u8,
                    &sth,
                    rho,
                    node.busy_cores() > 0,
                    self.policy_version[i],
                );
                self.views[i] = Some(NodeView {
                    version: node.version(),
                    valid_until,
                    sth,
                    hb,
                });
            }
            let NodeView { sth, hb, .. } = self.views[i].as_ref().expect("just filled");
            let ns = &mut step.nodes[i];
            ns.node_id = i as u32;
            let s = ns.sth.get_or_insert_with(Default::default);
            s.buckets.clear();
            s.buckets.extend_from_slice(&sth.buckets);
            s.total_tasks = sth.total_tasks;
            s.min_slack_us = sth.min_slack_or_zero();
            // Running work shrinks with time even when the buckets do not move.
            s.sum_load_us = if fresh {
                node.estimated_work_ns(now) / 1000
            } else {
                sth.sum_load_us
            };
            hb.write_fields(ns.heartbeat.get_or_insert_with(HeartbeatFields::default));
            let busy = node.busy_core_ns(now);
            ns.utilisation = if dt == 0 {
                node.busy_cores() as f64 * self.inv_cores[i]
            } else {
                (busy - self.util_busy[i]) as f64 * inv_dt * self.inv_cores[i]
            };
            self.util_busy[i] = busy;
            self.gst_index[i] = 0;
            if self.is_origin[i] {
                self.is_origin[i] = false;
                if self.protocol >= malcolm_proto::PROTOCOL_V2 {
                    if let Some(g) = ns.gst.take() {
                        self.gst_pool.push(g);
                    }
                    self.gst_index[i] = self.share_gst_table(&mut step.gst_tables, i, now) as u16;
                } else {
                    let g = ns
                        .gst
                        .get_or_insert_with(|| self.gst_pool.pop().unwrap_or_default());
                    self.fill_gst(g, i, now);
                }
            } else if let Some(g) = ns.gst.take() {
                self.gst_pool.push(g);
            }
        }
        if self.protocol >= malcolm_proto::PROTOCOL_V2 {
            let cols = step.node_columns.get_or_insert_with(Default::default);
            malcolm_proto::columns::pack(&step.nodes, &self.gst_index, cols);
            self.spare_nodes = std::mem::take(&mut step.nodes);
        } else {
            step.node_columns = None;
        }
        self.last_step_time = now;
        step
    }

    /// Writes node `i`'s Global State Table (heartbeat bytes and their ages at `now`) into `g`.
    pub(super) fn fill_gst(&self, g: &mut GlobalStateView, i: usize, now: u64) {
        let n = self.n;
        g.heartbeats.clear();
        g.heartbeats
            .extend_from_slice(self.gst[i * n..(i + 1) * n].as_flattened());
        g.age_ns.clear();
        g.age_ns
            .extend(self.gst_sent[i * n..(i + 1) * n].iter().map(|&s| {
                if s == u64::MAX {
                    u64::MAX
                } else {
                    now - s
                }
            }));
    }

    /// Protocol v2: the 1-based index of node `i`'s table in `tables`, adding it when no
    /// table there is identical (same bytes, same ages). Heartbeats reach every peer at the
    /// same instant on the ideal network, so most origins share one table.
    pub(super) fn share_gst_table(
        &mut self,
        tables: &mut Vec<GlobalStateView>,
        i: usize,
        now: u64,
    ) -> u32 {
        let n = self.n;
        let bytes = self.gst[i * n..(i + 1) * n].as_flattened();
        let sent = &self.gst_sent[i * n..(i + 1) * n];
        let same = |t: &GlobalStateView| {
            t.heartbeats == bytes
                && t.age_ns
                    .iter()
                    .zip(sent)
                    .all(|(&age, &s)| age == if s == u64::MAX { u64::MAX } else { now - s })
        };
        if let Some(k) = tables.iter().position(same) {
            return k as u32 + 1;
        }
        let mut g = self.gst_pool.pop().unwrap_or_default();
        self.fill_gst(&mut g, i, now);
        tables.push(g);
        tables.len() as u32
    }

    /// Applies the agent's answer to the waiting Step. A bad placement is refused and the
    /// Step keeps waiting.
    pub fn apply(&mut self, p: &Placement) -> Result<(), SimError> {
        if !self.has_outstanding {
            return Err(SimError::NoStepOutstanding);
        }
        if p.step_index != self.step_index {
            return Err(SimError::WrongStep {
                expected: self.step_index,
                got: p.step_index,
            });
        }
        let tasks = self.outstanding.len();
        if p.targets.len() != tasks {
            return Err(SimError::TargetCount {
                targets: p.targets.len(),
                tasks,
            });
        }
        if !p.hold_ns.is_empty() && p.hold_ns.len() != tasks {
            return Err(SimError::HoldCount {
                hold: p.hold_ns.len(),
                tasks,
            });
        }
        if let Some((index, &target)) = p
            .targets
            .iter()
            .enumerate()
            .find(|(_, &t)| t as usize >= self.n)
        {
            return Err(SimError::InvalidTarget {
                index,
                target,
                nodes: self.n,
            });
        }
        let net = self.scenario.network;
        let version = p.policy_version.min(u32::MAX as u64) as u32;
        let outstanding = std::mem::take(&mut self.outstanding);
        for (i, &h) in outstanding.iter().enumerate() {
            let target = p.targets[i];
            let hold = p.hold_ns.get(i).copied().unwrap_or(0);
            let t = self.tasks.get_mut(h);
            t.target = target;
            let origin = t.origin as usize;
            let size = t.size_bytes;
            self.policy_version[origin] = version;
            let ready = self.now + hold;
            let land_at = if target as usize == origin {
                ready
            } else {
                // FIFO on the origin's uplink, then the propagation delay.
                let ser = net.serialisation_ns(size);
                let depart = ready.max(self.uplink_free[origin]);
                self.uplink_free[origin] = depart + ser;
                if ser > 0 {
                    self.uplink_fifo[origin].push_back((depart, depart + ser, size));
                }
                depart + ser + net.one_way_ns
            };
            if land_at == self.now {
                self.land(h);
            } else {
                self.queue.push(land_at, PRIO_NORMAL, Ev::Land { task: h });
            }
        }
        self.outstanding = outstanding;
        self.outstanding.clear();
        self.has_outstanding = false;
        self.step_index += 1;
        self.steps_total += 1;
        Ok(())
    }
}
