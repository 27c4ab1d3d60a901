//! Fixed-rule baseline policies. (Filled by the simulator issue.)
