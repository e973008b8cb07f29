use std::collections::BTreeSet;

use http::StatusCode;
use kv_core::{Error, Limit};

use super::{Kind, by_status, decode, encode, message_of};

/// One error of every variant, with every limit.
fn every_error() -> Vec<Error> {
    let limits = Limit::ALL.map(|limit| Error::LimitExceeded {
        limit,
        max: 100,
        actual: 101,
    });
    let others = [
        Error::InvalidKey("key is in the reserved system key space".into()),
        Error::InvalidVersionstamp("not 20 hex characters".into()),
        Error::InvalidValue("unknown value encoding 9".into()),
        Error::InvalidSelector("Start key is greater than end key"),
        Error::InvalidCursor("Invalid cursor"),
        Error::InvalidArgument("The read range limit is invalid.".into()),
        Error::TypeMismatch("Failed to perform 'sum' mutation on a non-U64 value".into()),
        Error::PermissionDenied("Invalid access token.".into()),
        Error::ReadOnly,
        Error::Closed,
        Error::Unsupported {
            backend: "sqlite".into(),
            op: "read-only opening",
        },
        Error::Unavailable {
            backend: "sqlite".into(),
            message: "the database is busy".into(),
        },
        Error::backend("sqlite", "disk I/O error"),
    ];
    limits.into_iter().chain(others).collect()
}

/// The server's answer to `e`, as the client reads it.
fn round_trip(e: &Error) -> (Error, bool) {
    let (status, kind) = encode(e);
    decode(status, Some(&kind), message_of(e), "http://kv.invalid/v2")
}

/// The server encodes, the client decodes: the same kind every time, and
/// the same message but where the server keeps its details to itself (a
/// backend failure) or answers for a variant of its own (its database
/// closing is, for a client, the server being away: `Unavailable`).
#[test]
fn every_error_round_trips() {
    for e in every_error() {
        let (back, retried) = round_trip(&e);
        let kind = Kind::of(&e);
        assert_eq!(Kind::of(&back), kind, "{e:?} came back as {back:?}");
        assert_eq!(retried, kind.status().is_server_error(), "{e:?}");
        if !matches!(e, Error::Backend { .. } | Error::Closed) {
            assert_eq!(
                back.to_string(),
                e.to_string(),
                "{e:?} came back as {back:?}"
            );
        }
    }
}

/// Every row decodes to an error of its own kind and status (the HTTP
/// layer's refusals to `InvalidArgument`, a peer over its budget of failed
/// logins to `PermissionDenied`), and every row but those is reached by
/// some `kv_core::Error`.
#[test]
fn every_kind_decodes_to_itself() {
    let http_layer = [
        Kind::NotFound,
        Kind::MethodNotAllowed,
        Kind::PayloadTooLarge,
        Kind::RateLimited,
    ];
    let names: BTreeSet<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names.len(), Kind::ALL.len(), "names are unique");
    for kind in Kind::ALL {
        let detail = match kind {
            Kind::Limit => "limit/checks/100/101".to_owned(),
            _ => kind.name().to_owned(),
        };
        let (e, _) = decode(
            kind.status(),
            Some(&detail),
            "why".into(),
            "http://kv.invalid/",
        );
        let expected = match kind {
            Kind::RateLimited => Kind::PermissionDenied,
            _ if http_layer.contains(&kind) => Kind::InvalidArgument,
            _ => kind,
        };
        assert_eq!(Kind::of(&e), expected, "{kind:?} decoded as {e:?}");
        if !http_layer.contains(&kind) {
            assert_eq!(encode(&e).0, kind.status(), "{kind:?}");
        }
    }
    let reached: BTreeSet<&str> = every_error()
        .iter()
        .map(|e| Kind::of(e).name())
        .chain(http_layer.map(Kind::name))
        .collect();
    assert_eq!(reached, names, "every kind has a variant in every_error");
}

/// Answers that name no kind this client knows (denokv's, Deploy's, a
/// newer kv's) are read by their status.
#[test]
fn answers_without_a_known_kind_are_read_by_status() {
    let url = "http://kv.invalid/v2/snapshot_read";
    let cases = [
        (None, 500, Kind::Unavailable, true),
        (None, 503, Kind::Unavailable, true),
        (None, 401, Kind::PermissionDenied, false),
        (None, 403, Kind::PermissionDenied, false),
        (None, 400, Kind::InvalidArgument, false),
        (Some("from-the-future"), 400, Kind::InvalidArgument, false),
        (
            Some("limit/no-such-limit/1/2"),
            400,
            Kind::InvalidArgument,
            false,
        ),
    ];
    for (kind, status, expected, retry) in cases {
        let status = StatusCode::from_u16(status).unwrap();
        let (e, retried) = decode(status, kind, "text".into(), url);
        assert_eq!(
            (Kind::of(&e), retried),
            (expected, retry),
            "{kind:?} {status}: {e:?}"
        );
        if kind.is_none() {
            assert!(e.to_string().contains(url), "{e} names the URL");
        }
    }
    assert!(matches!(
        by_status(StatusCode::BAD_GATEWAY, "proxy".into()),
        (Error::Unavailable { .. }, true)
    ));
}
