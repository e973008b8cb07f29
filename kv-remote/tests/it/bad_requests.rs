//! Every kind of client mistake gets a 4xx with a readable message, and the
//! server keeps serving: after each bad request a good one still works.

use std::sync::Arc;

use kv_core::MemoryBackend;
use kv_remote::proto;
use prost::Message;

const TOKEN: &str = "bad-requests-token-123";
const NIL: &str = "00000000-0000-0000-0000-000000000000";

pub(crate) struct Server {
    base: String,
    http: reqwest::Client,
    backend: Arc<MemoryBackend>,
}

impl Server {
    pub(crate) async fn start() -> Server {
        let (listener, addr) = kv_remote::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let backend = Arc::new(MemoryBackend::new());
        tokio::spawn(kv_remote::serve(
            listener,
            backend.clone(),
            kv_remote::ServerConfig::new([TOKEN]).with_max_body_bytes(1 << 20),
            std::future::pending(),
        ));
        Server {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            backend,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, String) {
        status_and_text(self.respond(method, path, headers, body).await).await
    }

    async fn respond(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    /// A well-formed call of `/v2/{method}`, whatever `body` holds.
    async fn data_response(&self, method: &str, body: Vec<u8>) -> reqwest::Response {
        let auth = format!("Bearer {TOKEN}");
        let headers = [
            ("authorization", auth.as_str()),
            ("x-denokv-version", "3"),
            ("x-denokv-database-id", NIL),
        ];
        self.respond(
            reqwest::Method::POST,
            &format!("/v2/{method}"),
            &headers,
            body,
        )
        .await
    }

    pub(crate) async fn data(&self, method: &str, body: Vec<u8>) -> (u16, String) {
        status_and_text(self.data_response(method, body).await).await
    }

    /// The status of a data-path call whose body is a stream (a watch),
    /// without waiting for the body.
    pub(crate) async fn data_stream_status(&self, method: &str, body: Vec<u8>) -> u16 {
        self.data_response(method, body).await.status().as_u16()
    }

    /// A valid read must still work.
    async fn still_serving(&self) {
        let read = proto::SnapshotRead {
            ranges: vec![proto::ReadRange {
                start: vec![2, b'a', 0],
                end: vec![2, b'a', 0, 0],
                limit: 1,
                reverse: false,
            }],
        };
        let (status, _) = self.data("snapshot_read", read.encode_to_vec()).await;
        assert_eq!(status, 200, "the server keeps serving");
    }
}

async fn status_and_text(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

pub(crate) fn set(key: Vec<u8>, value: proto::KvValue) -> proto::Mutation {
    proto::Mutation {
        key,
        value: Some(value),
        mutation_type: proto::MutationType::MSet as i32,
        ..Default::default()
    }
}

pub(crate) fn bytes(data: Vec<u8>) -> proto::KvValue {
    proto::KvValue {
        data,
        encoding: proto::ValueEncoding::VeBytes as i32,
    }
}

pub(crate) fn write(w: proto::AtomicWrite) -> Vec<u8> {
    w.encode_to_vec()
}

/// An `AtomicWrite` enqueueing the number 1 for `deadline_ms`.
fn enqueue(deadline_ms: i64) -> Vec<u8> {
    write(proto::AtomicWrite {
        enqueues: vec![proto::Enqueue {
            payload: vec![0xff, 0x10, 0x49, 0x02],
            deadline_ms,
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn read(ranges: Vec<proto::ReadRange>) -> Vec<u8> {
    proto::SnapshotRead { ranges }.encode_to_vec()
}

fn range(start: Vec<u8>, end: Vec<u8>, limit: i32) -> proto::ReadRange {
    proto::ReadRange {
        start,
        end,
        limit,
        reverse: false,
    }
}

#[tokio::test]
async fn bad_requests_get_4xx_and_the_server_keeps_serving() {
    let s = Server::start().await;
    let auth = format!("Bearer {TOKEN}");
    let json = ("content-type", "application/json");
    let good_meta = br#"{"supportedVersions":[2,3]}"#.to_vec();
    let key = vec![2, b'k', 0];

    type Case = (&'static str, u16, (u16, String));
    let mut cases: Vec<Case> = Vec::new();
    macro_rules! case {
        ($name:expr, $status:expr, $call:expr) => {{
            let got = $call;
            cases.push(($name, $status, got));
            s.still_serving().await;
        }};
    }

    case!(
        "unknown path",
        404,
        s.send(reqwest::Method::GET, "/nope", &[], vec![]).await
    );
    case!(
        "unknown data method",
        404,
        s.data("dequeue_everything", vec![]).await
    );
    case!(
        "PUT metadata",
        405,
        s.send(reqwest::Method::PUT, "/", &[], vec![]).await
    );
    case!(
        "GET data path",
        405,
        s.send(reqwest::Method::GET, "/v2/snapshot_read", &[], vec![])
            .await
    );
    case!(
        "metadata without token",
        401,
        s.send(reqwest::Method::POST, "/", &[json], good_meta.clone())
            .await
    );
    case!(
        "metadata with wrong token",
        401,
        s.send(
            reqwest::Method::POST,
            "/",
            &[json, ("authorization", "Bearer wrong-token-000")],
            good_meta.clone()
        )
        .await
    );
    case!(
        "metadata with malformed authorization",
        401,
        s.send(
            reqwest::Method::POST,
            "/",
            &[json, ("authorization", "Token")],
            good_meta.clone()
        )
        .await
    );
    case!(
        "metadata not JSON",
        400,
        s.send(
            reqwest::Method::POST,
            "/",
            &[json, ("authorization", &auth)],
            b"{oops".to_vec()
        )
        .await
    );
    case!(
        "metadata with unsupported versions",
        400,
        s.send(
            reqwest::Method::POST,
            "/",
            &[json, ("authorization", &auth)],
            br#"{"supportedVersions":[7]}"#.to_vec()
        )
        .await
    );
    case!(
        "data path without version header",
        400,
        s.send(
            reqwest::Method::POST,
            "/v2/snapshot_read",
            &[("authorization", &auth), ("x-denokv-database-id", NIL)],
            read(vec![])
        )
        .await
    );
    case!(
        "data path with unknown version",
        400,
        s.send(
            reqwest::Method::POST,
            "/v2/snapshot_read",
            &[
                ("authorization", &auth),
                ("x-denokv-version", "9"),
                ("x-denokv-database-id", NIL)
            ],
            read(vec![])
        )
        .await
    );
    case!(
        "data path without token",
        401,
        s.send(
            reqwest::Method::POST,
            "/v2/snapshot_read",
            &[("x-denokv-version", "3"), ("x-denokv-database-id", NIL)],
            read(vec![])
        )
        .await
    );
    case!(
        "data path with wrong token",
        401,
        s.send(
            reqwest::Method::POST,
            "/v2/snapshot_read",
            &[
                ("authorization", "Bearer nope-nope-nope"),
                ("x-denokv-version", "3"),
                ("x-denokv-database-id", NIL)
            ],
            read(vec![])
        )
        .await
    );
    case!(
        "wrong database id",
        400,
        s.send(
            reqwest::Method::POST,
            "/v2/snapshot_read",
            &[
                ("authorization", &auth),
                ("x-denokv-version", "3"),
                (
                    "x-denokv-database-id",
                    "6f1c4a53-1111-4a1a-9b1b-000000000001"
                )
            ],
            read(vec![])
        )
        .await
    );
    case!(
        "database id not a UUID",
        400,
        s.send(
            reqwest::Method::POST,
            "/v2/snapshot_read",
            &[
                ("authorization", &auth),
                ("x-denokv-version", "3"),
                ("x-denokv-database-id", "xyz")
            ],
            read(vec![])
        )
        .await
    );
    case!(
        "malformed protobuf",
        400,
        s.data("atomic_write", vec![0xff, 0xff, 0xff]).await
    );
    case!(
        "read limit 0",
        400,
        s.data("snapshot_read", read(vec![range(key.clone(), vec![3], 0)]))
            .await
    );
    case!(
        "negative read limit",
        400,
        s.data("snapshot_read", read(vec![range(key.clone(), vec![3], -5)]))
            .await
    );
    case!(
        "11 read ranges",
        400,
        s.data(
            "snapshot_read",
            read((0..11).map(|_| range(key.clone(), vec![3], 1)).collect())
        )
        .await
    );
    case!(
        "read entries over 1000",
        400,
        s.data(
            "snapshot_read",
            read(vec![
                range(key.clone(), vec![3], 600),
                range(key.clone(), vec![3], 600)
            ])
        )
        .await
    );
    case!(
        "read key over 2049 bytes",
        400,
        s.data(
            "snapshot_read",
            read(vec![range(vec![2; 2050], vec![3], 1)])
        )
        .await
    );
    case!(
        "check versionstamp of 5 bytes",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                checks: vec![proto::Check {
                    key: key.clone(),
                    versionstamp: vec![0; 5]
                }],
                ..Default::default()
            })
        )
        .await
    );
    case!(
        "unspecified mutation type",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                mutations: vec![proto::Mutation {
                    key: key.clone(),
                    value: Some(bytes(vec![1])),
                    ..Default::default()
                }],
                ..Default::default()
            })
        )
        .await
    );
    case!(
        "set without a value",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                mutations: vec![proto::Mutation {
                    key: key.clone(),
                    mutation_type: 1,
                    ..Default::default()
                }],
                ..Default::default()
            })
        )
        .await
    );
    case!(
        "unknown value encoding",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                mutations: vec![set(
                    key.clone(),
                    proto::KvValue {
                        data: vec![1],
                        encoding: 7
                    }
                )],
                ..Default::default()
            })
        )
        .await
    );
    case!(
        "LE64 value of 3 bytes",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                mutations: vec![set(
                    key.clone(),
                    proto::KvValue {
                        data: vec![1, 2, 3],
                        encoding: 2
                    }
                )],
                ..Default::default()
            })
        )
        .await
    );
    case!(
        "value over 65536 bytes",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                mutations: vec![set(key.clone(), bytes(vec![0; 65537]))],
                ..Default::default()
            })
        )
        .await
    );
    case!(
        "empty write key",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                mutations: vec![set(vec![], bytes(vec![1]))],
                ..Default::default()
            })
        )
        .await
    );
    case!(
        "write key over 2048 bytes",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                mutations: vec![set(vec![2; 2049], bytes(vec![1]))],
                ..Default::default()
            })
        )
        .await
    );
    case!(
        "101 checks",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                checks: (0..101)
                    .map(|_| proto::Check {
                        key: key.clone(),
                        versionstamp: vec![]
                    })
                    .collect(),
                ..Default::default()
            })
        )
        .await
    );
    case!(
        "1001 mutations",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                mutations: (0..1001)
                    .map(|_| set(key.clone(), bytes(vec![1])))
                    .collect(),
                ..Default::default()
            })
        )
        .await
    );
    case!(
        "negative expiry",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                mutations: vec![proto::Mutation {
                    expire_at_ms: -5,
                    ..set(key.clone(), bytes(vec![1]))
                }],
                ..Default::default()
            })
        )
        .await
    );
    case!(
        "enqueue 60 days ahead",
        400,
        s.data("atomic_write", enqueue(i64::MAX / 2)).await
    );
    case!(
        "enqueue with a negative deadline",
        400,
        s.data("atomic_write", enqueue(-1)).await
    );
    case!(
        "write into the system key space",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                mutations: vec![set(vec![0xff, 1, 2], bytes(vec![1]))],
                ..Default::default()
            })
        )
        .await
    );
    case!(
        "check in the system key space",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                checks: vec![proto::Check {
                    key: vec![0xff],
                    versionstamp: vec![]
                }],
                ..Default::default()
            })
        )
        .await
    );
    case!(
        "watch of 11 keys",
        400,
        s.data(
            "watch",
            proto::Watch {
                keys: (0..11)
                    .map(|_| proto::WatchKey { key: key.clone() })
                    .collect()
            }
            .encode_to_vec()
        )
        .await
    );
    case!(
        "watch of a system key",
        400,
        s.data(
            "watch",
            proto::Watch {
                keys: vec![proto::WatchKey { key: vec![0xff, 0] }]
            }
            .encode_to_vec()
        )
        .await
    );
    case!(
        "body over the size limit",
        413,
        s.data("atomic_write", vec![0; 2 << 20]).await
    );
    let (_, message) = s.data("snapshot_read", vec![0; 2 << 20]).await;
    assert!(
        message.contains("larger than this server's limit of"),
        "an oversized body is told the limit: {message}"
    );

    // A type mismatch found while applying the commit is the client's mistake too.
    let (status, _) = s
        .data(
            "atomic_write",
            write(proto::AtomicWrite {
                mutations: vec![set(key.clone(), bytes(vec![1]))],
                ..Default::default()
            }),
        )
        .await;
    assert_eq!(status, 200);
    let sum = proto::Mutation {
        key: key.clone(),
        value: Some(proto::KvValue {
            data: 1u64.to_le_bytes().to_vec(),
            encoding: 2,
        }),
        mutation_type: proto::MutationType::MSum as i32,
        ..Default::default()
    };
    case!(
        "sum on a bytes value",
        400,
        s.data(
            "atomic_write",
            write(proto::AtomicWrite {
                mutations: vec![sum],
                ..Default::default()
            })
        )
        .await
    );

    assert!(cases.len() >= 25, "{} kinds of bad request", cases.len());
    let mut failures = Vec::new();
    for (name, want, (got, body)) in &cases {
        if want != got || body.trim().is_empty() {
            failures.push(format!("{name}: want {want}, got {got} {body:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The message names what is wrong, not a rule the value did not break.
    let negative = cases
        .iter()
        .find(|c| c.0 == "enqueue with a negative deadline")
        .map(|c| &c.2.1);
    assert!(
        negative.is_some_and(|body| body.contains("negative")),
        "{negative:?}"
    );
}

#[tokio::test]
async fn raw_reads_never_reach_system_keys() {
    let s = Server::start().await;
    use kv_core::backend::{AtomicWrite, Backend, Mutation, MutationKind};
    let put = |key: Vec<u8>| Mutation {
        key,
        kind: MutationKind::Set {
            value: kv_core::KvValue::Bytes(vec![7]),
            expire_at_ms: None,
        },
    };
    let direct = AtomicWrite {
        mutations: vec![put(vec![2, b'u', 0]), put(vec![0xff, b'q', 0])],
        ..Default::default()
    };
    s.backend.atomic_write(direct).await.unwrap();
    // A read of everything up to the top of the byte space sees user keys only.
    let out = s
        .http
        .post(format!("{}/v2/snapshot_read", s.base))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("x-denokv-version", "3")
        .header("x-denokv-database-id", NIL)
        .body(read(vec![
            range(vec![], vec![0xff, 0xff, 0xff], 900),
            proto::ReadRange {
                reverse: true,
                ..range(vec![0], vec![0xff, 0xff], 10)
            },
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    let out = proto::SnapshotReadOutput::decode(out.bytes().await.unwrap()).unwrap();
    for r in out.ranges {
        let keys: Vec<_> = r.values.into_iter().map(|e| e.key).collect();
        assert_eq!(keys, vec![vec![2, b'u', 0]]);
    }
}

#[tokio::test]
async fn healthz_answers() {
    let s = Server::start().await;
    let (status, body) = s.send(reqwest::Method::GET, "/healthz", &[], vec![]).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}
