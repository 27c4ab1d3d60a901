//! Reward functions: barrier, linear, step, Malcolm variance. (Filled by the agents issue.)
