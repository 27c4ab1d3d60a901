//! Link-state bookkeeping of the sessions: how many placements crossed a PFC-paused link at
//! decision time (the PfcStorm experiment's "placed behind a paused link"), measured on the
//! server from the Step's `links` and the Placement, whatever policy decided.

use malcolm_proto::bridge::Step;

/// Tasks of `step` whose placement on `targets` crosses a PFC-paused link: a remote target
/// whose downlink, or whose origin's uplink, the Step lists as paused. Local placements
/// cross no link.
pub fn behind_paused(step: &Step, targets: &[u32], n: usize) -> u64 {
    if !step.links.iter().any(|l| l.pfc_paused) {
        return 0;
    }
    let (mut up, mut down) = (vec![false; n], vec![false; n]);
    for l in step.links.iter().filter(|l| l.pfc_paused) {
        let i = l.node_id as usize;
        if i < n {
            if l.uplink {
                up[i] = true;
            } else {
                down[i] = true;
            }
        }
    }
    let paused = |v: &[bool], i: usize| v.get(i).copied().unwrap_or(false);
    step.tasks
        .iter()
        .zip(targets)
        .filter(|(t, &j)| {
            let (o, j) = (t.origin as usize, j as usize);
            o != j && (paused(&up, o) || paused(&down, j))
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use malcolm_proto::bridge::{LinkState, PendingTask};

    fn task(origin: u32) -> PendingTask {
        PendingTask {
            origin,
            ..Default::default()
        }
    }

    #[test]
    fn counts_remote_placements_through_a_paused_uplink_or_downlink() {
        let mut step = Step {
            tasks: vec![task(0), task(0), task(1), task(2), task(2)],
            ..Default::default()
        };
        // Nothing paused: nothing counted.
        assert_eq!(behind_paused(&step, &[1, 2, 2, 0, 2], 3), 0);
        step.links = vec![
            LinkState {
                node_id: 0,
                uplink: true,
                pfc_paused: true,
                ..Default::default()
            },
            LinkState {
                node_id: 2,
                uplink: false,
                pfc_paused: true,
                ..Default::default()
            },
            LinkState {
                node_id: 1,
                uplink: false,
                pfc_paused: false,
                ..Default::default()
            },
        ];
        // 0->1 (uplink 0 paused), 0->2 (both), 1->2 (downlink 2 paused) count; 2->0 does not
        // (uplink 2 and downlink 0 run); 2->2 is local.
        assert_eq!(behind_paused(&step, &[1, 2, 2, 0, 2], 3), 3);
        // Local placements never count, even from a paused origin.
        assert_eq!(behind_paused(&step, &[0, 0, 1, 2, 2], 3), 0);
    }
}
