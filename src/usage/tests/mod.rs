//! Tests for the usage scanner.
