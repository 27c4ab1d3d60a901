//! Placeholder until the simulator issue lands.
