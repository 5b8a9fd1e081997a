//! stdout for the stdio fake: rmcp's frames, with the answers a `garbage` fault marked
//! replaced by their garbage (`garbage::mangle`).
//!
//! The writer sees bytes, not messages, so it keeps the line being written until its end and
//! looks each whole frame up by its JSON-RPC id. A marked frame is replaced whole, in place:
//! garbage never lands inside another frame, and the frames around it go out unchanged. The
//! replacement ends with a newline like any frame, so a `cut-answer` is the answer's first
//! half on a line of its own and the rest is never sent.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

use super::faults::FaultState;

/// An `AsyncWrite` that passes every frame to `inner`, replacing the marked ones.
pub struct InjectingWriter<W> {
    inner: W,
    faults: FaultState,
    /// The frame being written, up to its newline.
    line: Vec<u8>,
    /// Whole frames (replaced or not) waiting for `inner`, and how much of them is out.
    out: Vec<u8>,
    sent: usize,
}

/// Bytes waiting for `inner` past which a write waits: the fake's answers are small, this is
/// only a bound on what a stalled reader can make it hold.
const OUT_LIMIT: usize = 1 << 20;

impl<W> InjectingWriter<W> {
    pub fn new(inner: W, faults: FaultState) -> Self {
        InjectingWriter {
            inner,
            faults,
            line: Vec::new(),
            out: Vec::new(),
            sent: 0,
        }
    }

    /// Moves the whole frames of `line` to `out`, replacing the marked ones.
    fn take_frames(&mut self) {
        while let Some(end) = self.line.iter().position(|b| *b == b'\n') {
            let frame: Vec<u8> = self.line.drain(..=end).collect();
            match self.replacement(&frame[..end]) {
                Some(garbage) => {
                    self.out.extend_from_slice(garbage.as_bytes());
                    self.out.push(b'\n');
                }
                None => self.out.extend_from_slice(&frame),
            }
        }
    }

    /// The garbage to send in place of `frame`, if its answer is marked; reports the fault
    /// applied, since this is the moment it is.
    fn replacement(&self, frame: &[u8]) -> Option<String> {
        if !self.faults.garbage_owed() {
            return None;
        }
        let message: serde_json::Value = serde_json::from_slice(frame).ok()?;
        // Only answers carry an id without a method.
        if message.get("method").is_some() {
            return None;
        }
        let id = message.get("id")?.to_string();
        let mark = self.faults.take_garbage(&id)?;
        self.faults.note_applied(&mark.fault, mark.request);
        let text = String::from_utf8_lossy(frame);
        Some(super::garbage::mangle(mark.form, mark.pick, &text))
    }
}

impl<W: AsyncWrite + Unpin> InjectingWriter<W> {
    /// Writes out what `out` holds. Ready once it is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.out.len() {
            let n = match Pin::new(&mut self.inner).poll_write(cx, &self.out[self.sent..]) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.out.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for InjectingWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() - this.sent >= OUT_LIMIT {
            match this.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        this.line.extend_from_slice(buf);
        this.take_frames();
        // Pass on what can go now; the rest goes with the next write or flush (rmcp flushes
        // after every message).
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;
    use crate::fake::faults::{GarbageMark, Transport};
    use crate::fake::wire::{GarbageForm, WireKind};

    #[tokio::test]
    async fn a_marked_answer_is_replaced_whole_and_the_others_pass() -> std::io::Result<()> {
        let faults = FaultState::new(Transport::Stdio);
        faults.add_local(
            WireKind::Garbage {
                forms: vec![GarbageForm::Text],
            },
            1.0,
            vec![],
            None,
        );
        let fault = faults.active().remove(0);
        let mut out = InjectingWriter::new(Vec::new(), faults.clone());
        faults.mark_garbage("2".into(), GarbageMark::new(&fault, None, 0));
        // Frames split anywhere, two in one write: only the marked one changes.
        out.write_all(br#"{"jsonrpc":"2.0","id":1,"res"#).await?;
        out.write_all(b"ult\":{}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n")
            .await?;
        out.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"id\":2}\n")
            .await?;
        out.flush().await?;
        let text = String::from_utf8_lossy(&out.inner).to_string();
        assert_eq!(
            text,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\nthis is not json-rpc\n{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"id\":2}\n"
        );
        assert!(!faults.garbage_owed());
        Ok(())
    }
}
