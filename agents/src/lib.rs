//! # Layout
//!
//! The libtorch learners behind the `malcolm_policies::Policy` interface. (Filled by the
//! agents issue.)
