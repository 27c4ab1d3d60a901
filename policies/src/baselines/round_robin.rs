//! Round-robin placement: node 0, 1, ..., N-1, 0, ... across all origins of the session.

use crate::{Decision, Policy, PolicyError};
use malcolm_proto::bridge::{Hello, Step};

pub struct RoundRobin {
    nodes: usize,
    next: usize,
}

impl RoundRobin {
    pub fn new(hello: &Hello) -> Self {
        Self {
            nodes: hello.nodes.len(),
            next: 0,
        }
    }
}

impl Policy for RoundRobin {
    fn decide(&mut self, step: &Step, out: &mut Decision) -> Result<(), PolicyError> {
        out.clear();
        for _ in &step.tasks {
            out.targets.push(self.next as u32);
            self.next = (self.next + 1) % self.nodes;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn cycles_across_steps() {
        let h = hello(&[(1, 1.0); 3]);
        let mut p = RoundRobin::new(&h);
        let s = step(
            (0..3).map(|i| node(i, 0, 0)).collect(),
            vec![task(0, 0, 1, 1), task(1, 2, 1, 1)],
        );
        let mut d = Decision::default();
        p.decide(&s, &mut d).unwrap();
        assert_eq!(d.targets, vec![0, 1]);
        p.decide(&s, &mut d).unwrap();
        assert_eq!(d.targets, vec![2, 0]);
    }
}
