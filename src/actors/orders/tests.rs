//! Unit tests: written by a helper.
