//! Real-Envoy harness (filled in by the harness work).
