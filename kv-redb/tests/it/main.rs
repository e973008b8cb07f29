//! Integration tests of the redb backend.
