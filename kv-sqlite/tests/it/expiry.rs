//! Expired keys disappear from reads and checks at once and from the file
//! soon after, driven by a manual clock; see
//! `kv_conformance::durable::expiry`.

use kv_conformance::durable::expiry;

use crate::{Sqlite, TestResult};

#[tokio::test]
async fn expired_keys_are_hidden_then_swept() -> TestResult {
    expiry::expired_keys_are_hidden_then_swept(&Sqlite).await
}

#[tokio::test]
async fn checks_and_sums_treat_expired_keys_as_absent() -> TestResult {
    expiry::checks_and_sums_treat_expired_keys_as_absent(&Sqlite).await
}

#[tokio::test]
async fn expired_rows_are_swept_at_open() -> TestResult {
    expiry::expired_keys_are_swept_at_open(&Sqlite).await
}
