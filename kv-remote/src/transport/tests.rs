use super::is_http2_start;

/// What tells an HTTP/1 answer, or TLS, from HTTP/2 when a new connection
/// fails.
#[test]
fn only_a_settings_frame_on_stream_0_starts_http2() {
    let settings = [0, 0, 18, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
    assert!(is_http2_start(&settings));
    assert!(
        is_http2_start(&settings[..4]),
        "a beginning that may still be"
    );
    assert!(!is_http2_start(b"HTTP/1.1 400 Bad Request\r\n"));
    assert!(!is_http2_start(&[0x15, 3, 3, 0, 2, 2, 50]), "a TLS alert");
    let headers = [0, 0, 18, 1, 4, 0, 0, 0, 1];
    assert!(!is_http2_start(&headers), "not SETTINGS first");
    let on_stream_1 = [0, 0, 18, 4, 0, 0, 0, 0, 1];
    assert!(!is_http2_start(&on_stream_1));
}
