//! The 16-byte heartbeat payload (design.md section 4): packed, little-endian, saturating.
//!
//! `node_id u8 | flags u8 | load_factor u16 | slack_p10 i16 | slack_p50 i16 | queue_len u32 |
//! reserved u32 (policy version)`. Mirrored by `omnetpp/core/heartbeat.h`.

use crate::bridge::HeartbeatFields;
use crate::sth::SlackHistogram;

/// Size of the payload on the wire.
pub const HEARTBEAT_LEN: usize = 16;
/// Flag bit 0: some queued task already has negative slack.
pub const FLAG_PANIC: u8 = 0x01;
/// Flag bit 1: the node has nothing queued or running.
pub const FLAG_IDLE: u8 = 0x02;

/// A decoded heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heartbeat {
    pub node_id: u8,
    pub flags: u8,
    /// rho x 1000, rho = tasks in system / cores ([`rho_of_tasks`]).
    pub load_factor: u16,
    pub slack_p10_us: i16,
    pub slack_p50_us: i16,
    pub queue_len: u32,
    /// The reserved word; carries the policy version.
    pub reserved: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    #[error("heartbeat payload must be exactly {HEARTBEAT_LEN} bytes, got {0}")]
    WrongLength(usize),
}

/// Saturating conversion of an i64 slack (us) to the wire's i16.
pub fn saturate_i16(v: i64) -> i16 {
    v.clamp(i16::MIN as i64, i16::MAX as i64) as i16
}

/// The heartbeat's load rho (design.md section 4, one definition for both environments): the
/// node's tasks in system (ingress ring + ready queue + running) divided by its cores, at the
/// heartbeat's send time. 1.0 = one task per core. Mirrored by `rhoOfTasks` in
/// `omnetpp/core/heartbeat.h`; golden vectors in `proto/testdata/heartbeat_load.csv`.
pub fn rho_of_tasks(tasks_in_system: u64, cores: u32) -> f64 {
    tasks_in_system as f64 / cores.max(1) as f64
}

/// Saturating conversion of a load factor rho to rho x 1000 in a u16 (rounded half away from
/// zero; negative and NaN become 0).
pub fn load_factor_from_rho(rho: f64) -> u16 {
    if rho.is_nan() || rho <= 0.0 {
        return 0;
    }
    let milli = (rho * 1000.0).round();
    if milli >= u16::MAX as f64 {
        u16::MAX
    } else {
        milli as u16
    }
}

impl Heartbeat {
    /// Builds a heartbeat from wide values, saturating each into its wire field.
    pub fn from_values(
        node_id: u8,
        flags: u8,
        load_factor_milli: u64,
        slack_p10_us: i64,
        slack_p50_us: i64,
        queue_len: u64,
        policy_version: u32,
    ) -> Self {
        Self {
            node_id,
            flags,
            load_factor: load_factor_milli.min(u16::MAX as u64) as u16,
            slack_p10_us: saturate_i16(slack_p10_us),
            slack_p50_us: saturate_i16(slack_p50_us),
            queue_len: queue_len.min(u32::MAX as u64) as u32,
            reserved: policy_version,
        }
    }

    /// The heartbeat a node sends given its STH: flags and percentiles read off the histogram.
    /// `busy` is whether a core is running a task (a node is IDLE only with nothing queued and
    /// nothing running).
    pub fn from_sth(
        node_id: u8,
        sth: &SlackHistogram,
        rho: f64,
        busy: bool,
        policy_version: u32,
    ) -> Self {
        let mut flags = 0;
        if sth.panic() {
            flags |= FLAG_PANIC;
        }
        if sth.total_tasks == 0 && !busy {
            flags |= FLAG_IDLE;
        }
        Self {
            node_id,
            flags,
            load_factor: load_factor_from_rho(rho),
            slack_p10_us: saturate_i16(sth.percentile_us(10)),
            slack_p50_us: saturate_i16(sth.percentile_us(50)),
            queue_len: sth.total_tasks,
            reserved: policy_version,
        }
    }

    /// From the bridge's unpacked `HeartbeatFields`, saturating each field into its wire width
    /// exactly as the 16-byte payload would carry it. The one conversion in that direction.
    pub fn from_fields(f: &HeartbeatFields) -> Self {
        Self::from_values(
            f.node_id.min(u8::MAX as u32) as u8,
            f.flags.min(u8::MAX as u32) as u8,
            f.load_factor_milli as u64,
            f.slack_p10_us as i64,
            f.slack_p50_us as i64,
            f.queue_len as u64,
            f.policy_version,
        )
    }

    /// The bridge's unpacked `HeartbeatFields` of this heartbeat. The one conversion in that
    /// direction (rack-sim's Steps, the C++ `fillHeartbeat` mirrors it).
    pub fn to_fields(&self) -> HeartbeatFields {
        let mut f = HeartbeatFields::default();
        self.write_fields(&mut f);
        f
    }

    /// [`Heartbeat::to_fields`] into an existing message (no allocation).
    pub fn write_fields(&self, f: &mut HeartbeatFields) {
        f.node_id = self.node_id as u32;
        f.flags = self.flags as u32;
        f.load_factor_milli = self.load_factor as u32;
        f.slack_p10_us = self.slack_p10_us as i32;
        f.slack_p50_us = self.slack_p50_us as i32;
        f.queue_len = self.queue_len;
        f.policy_version = self.reserved;
    }

    pub fn encode(&self) -> [u8; HEARTBEAT_LEN] {
        let mut b = [0u8; HEARTBEAT_LEN];
        b[0] = self.node_id;
        b[1] = self.flags;
        b[2..4].copy_from_slice(&self.load_factor.to_le_bytes());
        b[4..6].copy_from_slice(&self.slack_p10_us.to_le_bytes());
        b[6..8].copy_from_slice(&self.slack_p50_us.to_le_bytes());
        b[8..12].copy_from_slice(&self.queue_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.reserved.to_le_bytes());
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, HeartbeatError> {
        let b: &[u8; HEARTBEAT_LEN] = bytes
            .try_into()
            .map_err(|_| HeartbeatError::WrongLength(bytes.len()))?;
        Ok(Self {
            node_id: b[0],
            flags: b[1],
            load_factor: u16::from_le_bytes([b[2], b[3]]),
            slack_p10_us: i16::from_le_bytes([b[4], b[5]]),
            slack_p50_us: i16::from_le_bytes([b[6], b[7]]),
            queue_len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            reserved: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        })
    }

    pub fn panic(&self) -> bool {
        self.flags & FLAG_PANIC != 0
    }

    pub fn idle(&self) -> bool {
        self.flags & FLAG_IDLE != 0
    }

    /// rho as a float.
    pub fn rho(&self) -> f64 {
        self.load_factor as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_wrong_lengths() {
        for n in [0, 1, 15, 17, 32] {
            assert_eq!(
                Heartbeat::decode(&vec![0; n]),
                Err(HeartbeatError::WrongLength(n))
            );
        }
    }

    #[test]
    fn fields_round_trip_and_saturate_like_the_payload() {
        let hb = Heartbeat::from_values(7, 3, 1_500, -40, 90_000, 12, 5);
        assert_eq!(Heartbeat::from_fields(&hb.to_fields()), hb);
        let wide = HeartbeatFields {
            node_id: 300,
            flags: 1,
            load_factor_milli: 70_000,
            slack_p10_us: -70_000,
            slack_p50_us: 70_000,
            queue_len: 4,
            policy_version: 9,
        };
        let hb = Heartbeat::from_fields(&wide);
        assert_eq!(
            (hb.node_id, hb.load_factor, hb.slack_p10_us, hb.slack_p50_us),
            (u8::MAX, u16::MAX, i16::MIN, i16::MAX)
        );
    }

    #[test]
    fn idle_node_has_idle_flag_and_max_slack() {
        let hb = Heartbeat::from_sth(3, &SlackHistogram::new(), 0.0, false, 9);
        assert!(hb.idle() && !hb.panic());
        assert_eq!((hb.slack_p10_us, hb.slack_p50_us), (i16::MAX, i16::MAX));
        let busy = Heartbeat::from_sth(3, &SlackHistogram::new(), 0.5, true, 9);
        assert!(!busy.idle());
    }
}
