//! Tests of the host itself (not of the filter), driven mostly by the probe guest.

mod callout_parity;
mod callouts;
mod common;
mod failure;
mod lifecycle;
mod loading;
mod metrics;
mod misc;
mod properties;
mod shared_data;
mod time;
mod transcripts;
mod wasm;
