//! The event handlers of the episode loop: arrivals, decisions due, tasks landing on their
//! node, core and processor-sharing completions, heartbeats sent and received.

use super::{Ev, RackSim, TaskRec};
use crate::edf::Job;
use crate::engine::{PRIO_LATE, PRIO_NORMAL};
use crate::error::SimError;
use crate::metrics::Finished;
use crate::node::Effect;
use crate::workload::NewTask;
use malcolm_proto::bridge::{EndReason, OutcomeKind, TaskOutcome};
use malcolm_proto::heartbeat::rho_of_tasks;
use malcolm_proto::Heartbeat;

impl RackSim {
    /// Handles one event; `Some(reason)` ends the episode.
    pub(super) fn handle(&mut self, ev: Ev) -> Result<Option<EndReason>, SimError> {
        match ev {
            Ev::Poisson => {
                let p = self.poisson.as_mut().expect("scheduled by the source");
                let t = p.next();
                let next = p.peek_time();
                self.queue.push(next, PRIO_NORMAL, Ev::Poisson);
                self.arrive(t);
            }
            Ev::Burst => {
                let b = self.bursts.as_mut().expect("scheduled by the source");
                if let Some(t) = b.next() {
                    if let Some(next) = b.peek_time() {
                        self.queue.push(next, PRIO_NORMAL, Ev::Burst);
                    }
                    self.arrive(t);
                }
            }
            Ev::Trace => {
                let g = self.trace.as_mut().expect("scheduled by the source");
                if let Some(t) = g.next()? {
                    if let Some(next) = g.peek_time() {
                        self.queue.push(next, PRIO_NORMAL, Ev::Trace);
                    }
                    self.arrive(t);
                }
            }
            Ev::Decide { gen } => {
                if gen == self.decide_gen && !self.pending.is_empty() {
                    self.take_decision();
                }
            }
            Ev::Land { task } => self.land(task),
            Ev::Drain { node } => {
                self.drain_scheduled[node as usize] = false;
                let mut fx = std::mem::take(&mut self.effects);
                let more = self.nodes[node as usize].drain(self.now, &mut fx);
                self.apply_effects(node, &mut fx);
                self.effects = fx;
                if more {
                    self.schedule_drain(node);
                }
            }
            Ev::Core { node, core, gen } => {
                let mut fx = std::mem::take(&mut self.effects);
                self.nodes[node as usize].core_done(self.now, core, gen, &mut fx);
                self.apply_effects(node, &mut fx);
                self.effects = fx;
            }
            Ev::Ps { node, gen } => {
                let mut fx = std::mem::take(&mut self.effects);
                self.nodes[node as usize].ps_done(self.now, gen, &mut fx);
                self.apply_effects(node, &mut fx);
                self.effects = fx;
            }
            Ev::HbSend { node } => self.send_heartbeat(node),
            Ev::HbLand { sender } => {
                let (n, s) = (self.n, sender as usize);
                let (sent_at, payload) = self.hb_in_flight[s]
                    .pop_front()
                    .expect("one entry per HbLand event");
                for r in (0..n).filter(|&r| r != s) {
                    if self.gst_sent[r * n + s] == u64::MAX || self.gst_sent[r * n + s] < sent_at {
                        self.gst[r * n + s] = payload;
                        self.gst_sent[r * n + s] = sent_at;
                    }
                }
            }
            Ev::TimeLimit => return Ok(Some(EndReason::Truncated)),
        }
        Ok(None)
    }

    pub(super) fn arrive(&mut self, t: NewTask) {
        let id = self.arrivals;
        self.arrivals += 1;
        let counted = self.scenario.limits.tasks.is_none_or(|l| id < l);
        let measured = counted && id >= self.scenario.warmup_tasks;
        let h = self.tasks.insert(TaskRec {
            id,
            origin: t.origin,
            class: t.class,
            size_bytes: t.size_bytes,
            service_ns: t.service_ns,
            estimate_ns: t.estimate_ns,
            arrival_ns: t.arrival_ns,
            deadline_ns: t.deadline_ns,
            step: 0,
            target: t.origin,
            counted,
            measured,
        });
        if counted {
            self.counted_in_flight += 1;
        }
        if measured {
            self.metrics.arrival(t.arrival_ns);
        }
        self.pending.push(h);
        let d = self.scenario.decision;
        if self.pending.len() >= d.max_batch {
            self.schedule_decide(self.now);
        } else if self.pending.len() == 1 {
            self.schedule_decide(self.now + d.window_ns);
        }
    }

    pub(super) fn schedule_decide(&mut self, at: u64) {
        self.decide_gen = self.decide_gen.wrapping_add(1);
        self.queue.push(
            at,
            PRIO_LATE,
            Ev::Decide {
                gen: self.decide_gen,
            },
        );
    }

    pub(super) fn take_decision(&mut self) {
        let d = self.scenario.decision;
        let k = self.pending.len().min(d.max_batch);
        self.outstanding.clear();
        self.outstanding.extend(self.pending.drain(..k));
        for &h in &self.outstanding {
            self.tasks.get_mut(h).step = self.step_index;
        }
        self.has_outstanding = true;
        if let Some(&first) = self.pending.first() {
            let due = self.tasks.get(first).arrival_ns + d.window_ns;
            let at = if self.pending.len() >= d.max_batch {
                self.now
            } else {
                due.max(self.now)
            };
            self.schedule_decide(at);
        }
    }

    pub(super) fn schedule_drain(&mut self, node: u32) {
        if !self.drain_scheduled[node as usize] {
            self.drain_scheduled[node as usize] = true;
            self.queue.push(self.now, PRIO_NORMAL, Ev::Drain { node });
        }
    }

    pub(super) fn land(&mut self, h: u32) {
        let t = *self.tasks.get(h);
        let node = &mut self.nodes[t.target as usize];
        node.enqueue(Job {
            handle: h,
            id: t.id,
            deadline: t.deadline_ns,
            work_ns: node.spec.wall_ns(t.service_ns),
            est_ns: node.spec.wall_ns(t.estimate_ns),
        });
        self.schedule_drain(t.target);
    }

    pub(super) fn apply_effects(&mut self, node: u32, fx: &mut Vec<Effect>) {
        for e in fx.drain(..) {
            match e {
                Effect::CoreTimer { core, gen, at } => {
                    self.queue
                        .push(at, PRIO_NORMAL, Ev::Core { node, core, gen })
                }
                Effect::PsTimer { gen, at } => {
                    self.queue.push(at, PRIO_NORMAL, Ev::Ps { node, gen })
                }
                Effect::Completed { handle } => self.finish(handle, node, false),
                Effect::Dropped { handle } => self.finish(handle, node, true),
            }
        }
    }

    pub(super) fn finish(&mut self, h: u32, node: u32, dropped: bool) {
        let t = self.tasks.remove(h);
        let on_time = !dropped && self.now <= t.deadline_ns;
        let kind = if dropped {
            OutcomeKind::Dropped
        } else if on_time {
            OutcomeKind::Completed
        } else {
            OutcomeKind::Missed
        };
        let latency_ns = self.now - t.arrival_ns;
        self.outcomes.push(TaskOutcome {
            task_id: t.id,
            node_id: node,
            origin: t.origin,
            kind: kind as i32,
            arrival_ns: t.arrival_ns,
            finish_ns: self.now,
            deadline_ns: t.deadline_ns,
            latency_ns,
            class: t.class,
            decided_at_step: t.step,
        });
        if t.counted {
            self.counted_in_flight -= 1;
        }
        if t.measured {
            self.metrics.finish(Finished {
                class: t.class,
                on_time,
                dropped,
                latency_ns,
                service_ref_ns: t.service_ns,
                service_wall_ns: self.nodes[node as usize].spec.wall_ns(t.service_ns),
            });
        }
    }

    pub(super) fn heartbeat_of(&self, i: usize) -> Heartbeat {
        let node = &self.nodes[i];
        let sth = node.sth(self.now);
        let rho = rho_of_tasks(node.tasks_in_system() as u64, node.spec.cores);
        Heartbeat::from_sth(
            i as u8,
            &sth,
            rho,
            node.busy_cores() > 0,
            self.policy_version[i],
        )
    }

    pub(super) fn send_heartbeat(&mut self, node: u32) {
        let i = node as usize;
        let payload = self.heartbeat_of(i).encode();
        // A node's own entry is a local write, fresh at once.
        self.gst[i * self.n + i] = payload;
        self.gst_sent[i * self.n + i] = self.now;
        self.hb_in_flight[i].push_back((self.now, payload));
        self.queue.push(
            self.now + self.scenario.network.one_way_ns,
            PRIO_NORMAL,
            Ev::HbLand { sender: node },
        );
        self.queue.push(
            self.now + self.scenario.heartbeat_interval_ns,
            PRIO_NORMAL,
            Ev::HbSend { node },
        );
    }
}
