//! Immediate TCP acknowledgements where a client waits for them.
//!
//! Deno's KV Connect client leaves Nagle's algorithm on and writes a
//! request's HTTP/2 HEADERS and DATA frames in two writes. Linux delays the
//! acknowledgement of the HEADERS segment (it hopes to send it with the
//! response, which cannot come before the DATA), while Nagle holds the DATA
//! back until that acknowledgement arrives: every Deno write of a value of
//! a kilobyte or more waited ~40 ms for the delayed-ACK timer.
//!
//! The same wait follows any segment the server sends nothing back for: a
//! new Deno connection sends its SETTINGS acknowledgement on its own, and
//! its next request waited ~40 ms behind it.
//!
//! So after a read that leaves a request incomplete, or that brought only
//! frames nobody answers (SETTINGS and PING acknowledgements,
//! WINDOW_UPDATE, RST_STREAM, PRIORITY), the server asks the kernel for a
//! quick acknowledgement, which also sends the pending one. On h2c
//! connections it follows the HTTP/2 frames to know; a read that brought a
//! whole request, a PING or SETTINGS gets no extra packet (the
//! acknowledgement rides on the answer: asking on every read cost 11% of
//! the small-read throughput). Connections whose framing it cannot see
//! (HTTP/1.1, TLS) ask after every read that returned data.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a client sends first on an h2c connection with prior knowledge.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// HTTP/2 frame types and flags that matter here (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Where in the byte stream a connection's reader is.
#[derive(Debug)]
enum Framing {
    /// Matching the h2c preface; `0..len` matched so far.
    Preface(usize),
    /// HTTP/2 frames.
    Frames(Frames),
    /// HTTP/1.1 or TLS: frames out of sight.
    Opaque,
}

/// Progress through HTTP/2 frames.
#[derive(Debug, Default)]
struct Frames {
    header: [u8; 9],
    /// Bytes of `header` read so far.
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: usize,
    /// Whether the last whole frame leaves its request waiting for more.
    waiting: bool,
    /// Whether the current frame, once whole, gets an answer (it ends a
    /// request, or it is a PING or SETTINGS).
    answerable: bool,
    /// Since the last decision: whether a frame ended, and whether one of
    /// them gets an answer.
    ended: bool,
    answered: bool,
}

impl Frames {
    fn consume(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                if self.payload_left == 0 {
                    self.end_frame();
                }
                continue;
            }
            let n = (9 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == 9 {
                let [l0, l1, l2, kind, flags, ..] = self.header;
                self.payload_left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                self.header_len = 0;
                self.waiting = match kind {
                    DATA => flags & END_STREAM == 0,
                    HEADERS => flags & END_STREAM == 0 || flags & END_HEADERS == 0,
                    CONTINUATION => true,
                    _ => false,
                };
                self.answerable = match kind {
                    DATA | HEADERS => !self.waiting,
                    SETTINGS | PING => flags & ACK == 0,
                    _ => false,
                };
                if self.payload_left == 0 {
                    self.end_frame();
                }
            }
        }
    }

    fn end_frame(&mut self) {
        self.ended = true;
        self.answered |= self.answerable;
    }

    /// Whether the client may be waiting for an acknowledgement of what
    /// was read since the last call: a frame or a request is only partly
    /// here, or nothing read will be answered.
    fn needs_ack(&mut self) -> bool {
        let ended = std::mem::take(&mut self.ended);
        let answered = std::mem::take(&mut self.answered);
        (ended && !answered) || self.header_len > 0 || self.payload_left > 0 || self.waiting
    }
}

impl Framing {
    /// Follows `bytes` (the next ones read) and tells whether to
    /// acknowledge them at once.
    fn read(&mut self, bytes: &[u8]) -> bool {
        if let Framing::Preface(matched) = self {
            let n = (PREFACE.len() - *matched).min(bytes.len());
            if bytes[..n] != PREFACE[*matched..*matched + n] {
                *self = Framing::Opaque;
            } else if *matched + n < PREFACE.len() {
                *matched += n;
                return true;
            } else {
                let mut frames = Frames::default();
                frames.consume(&bytes[n..]);
                *self = Framing::Frames(frames);
            }
            return self.read(&[]);
        }
        match self {
            Framing::Frames(frames) => {
                frames.consume(bytes);
                frames.needs_ack()
            }
            Framing::Opaque | Framing::Preface(_) => true,
        }
    }
}

/// A server-side connection that acknowledges at once what a client may be
/// waiting on.
pub(crate) struct QuickAck {
    stream: TcpStream,
    framing: Framing,
}

impl QuickAck {
    pub(crate) fn new(stream: TcpStream) -> Self {
        QuickAck {
            stream,
            framing: Framing::Preface(0),
        }
    }

    #[cfg(target_os = "linux")]
    fn acknowledge(&self) {
        // A failure only costs the delay this avoids.
        let _ = socket2::SockRef::from(&self.stream).set_tcp_quickack(true);
    }

    #[cfg(not(target_os = "linux"))]
    fn acknowledge(&self) {}
}

impl AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if matches!(polled, Poll::Ready(Ok(()))) && !read.is_empty() && this.framing.read(read) {
            this.acknowledge();
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: usize) -> Vec<u8> {
        let len = (payload as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 1];
        f.resize(9 + payload, 7);
        f
    }

    /// The decisions for `chunks` read one after another on an h2c
    /// connection whose preface came first.
    fn decisions(chunks: &[&[u8]]) -> Vec<bool> {
        let mut framing = Framing::Preface(0);
        assert!(!framing.read(PREFACE), "the preface alone needs nothing");
        chunks.iter().map(|c| framing.read(c)).collect()
    }

    #[test]
    fn a_request_whose_body_is_still_to_come_is_acknowledged() {
        let headers = frame(HEADERS, END_HEADERS, 40);
        let data = frame(DATA, END_STREAM, 1000);
        // Deno's two writes, read one by one: acknowledge the first.
        assert_eq!(decisions(&[&headers, &data]), [true, false]);
        // Both in one read: the response will carry the acknowledgement.
        assert_eq!(decisions(&[&[headers, data].concat()]), [false]);
    }

    #[test]
    fn frames_that_get_an_answer_need_nothing() {
        let get = frame(HEADERS, END_HEADERS | END_STREAM, 40);
        let settings = frame(SETTINGS, 0, 6);
        let ping = frame(PING, 0, 8);
        let window = frame(0x8, 0, 4);
        assert_eq!(
            decisions(&[&get, &settings, &ping, &[window, get.clone()].concat()]),
            [false, false, false, false]
        );
    }

    #[test]
    fn frames_nobody_answers_are_acknowledged() {
        // A new Deno connection's SETTINGS acknowledgement, alone: its next
        // request waited ~40 ms behind it.
        let settings_ack = frame(SETTINGS, ACK, 0);
        let ping_ack = frame(PING, ACK, 8);
        let window = frame(0x8, 0, 4);
        let reset = frame(0x3, 0, 4);
        let priority = frame(0x2, 0, 5);
        assert_eq!(
            decisions(&[&settings_ack, &ping_ack, &window, &reset, &priority]),
            [true; 5]
        );
        // A WINDOW_UPDATE whose last bytes come in a read of their own.
        let (head, tail) = window.split_at(11);
        assert_eq!(decisions(&[head, tail]), [true, true]);
        // A request's acknowledgement rides on its answer, even when the
        // request ends in the read after a flow-control update.
        let get = frame(HEADERS, END_HEADERS | END_STREAM, 40);
        let (head, tail) = get.split_at(20);
        assert_eq!(
            decisions(&[&[window, head.to_vec()].concat(), tail]),
            [true, false]
        );
    }

    #[test]
    fn a_frame_split_across_reads_is_acknowledged_until_whole() {
        let data = [
            frame(HEADERS, END_HEADERS, 10),
            frame(DATA, END_STREAM, 3000),
        ]
        .concat();
        let (a, rest) = data.split_at(4);
        let (b, c) = rest.split_at(1500);
        assert_eq!(decisions(&[a, b, c]), [true, true, false]);
        let unfinished = frame(DATA, 0, 100);
        assert_eq!(decisions(&[&unfinished]), [true], "more DATA to come");
        let continued = frame(HEADERS, END_STREAM, 10);
        assert_eq!(decisions(&[&continued]), [true], "CONTINUATION to come");
    }

    #[test]
    fn a_preface_in_pieces_then_frames() {
        let mut framing = Framing::Preface(0);
        assert!(framing.read(&PREFACE[..5]), "still unsure: acknowledge");
        let rest = [
            &PREFACE[5..],
            &frame(HEADERS, END_HEADERS | END_STREAM, 8)[..],
        ]
        .concat();
        assert!(!framing.read(&rest));
        assert!(matches!(framing, Framing::Frames(_)));
    }

    #[test]
    fn http1_and_tls_are_always_acknowledged() {
        for first in [
            &b"POST /v2/atomic_write HTTP/1.1\r\n"[..],
            &[0x16, 0x03, 0x01, 0x02],
        ] {
            let mut framing = Framing::Preface(0);
            assert!(framing.read(first));
            assert!(matches!(framing, Framing::Opaque));
            assert!(framing.read(b"more"));
        }
    }
}
