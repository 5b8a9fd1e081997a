//! stdout for the stdio fake: rmcp's frames, plus whole lines of garbage when a `garbage`
//! fault asks for them.
//!
//! A garbage line must reach the client as a line of its own, the way a server that prints a
//! stray log line to stdout would send it: never inside a JSON-RPC frame, which would turn a
//! "bad line" fault into a corrupted answer. So the writer remembers whether the last byte it
//! passed on ended a line, and injects owed lines only there, just before the next write.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

use super::faults::FaultState;

/// What a garbage line says: no JSON at all, so a client's parser fails on its first byte.
pub const GARBAGE_LINE: &[u8] = b"this is not json-rpc\n";

/// An `AsyncWrite` that passes everything to `inner` and injects garbage lines between lines.
pub struct InjectingWriter<W> {
    inner: W,
    faults: FaultState,
    /// Whether everything passed on so far ends with a newline (a frame boundary).
    at_line_start: bool,
    /// Garbage being written now, and how much of it is out.
    injecting: Vec<u8>,
    injected: usize,
}

impl<W> InjectingWriter<W> {
    pub fn new(inner: W, faults: FaultState) -> Self {
        InjectingWriter {
            inner,
            faults,
            at_line_start: true,
            injecting: Vec::new(),
            injected: 0,
        }
    }
}

impl<W: AsyncWrite + Unpin> InjectingWriter<W> {
    /// Writes out the garbage owed, if this is a line boundary. Ready once none is left.
    fn poll_inject(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.injecting.is_empty() && self.at_line_start {
            let owed = self.faults.take_garbage_lines();
            self.injecting = GARBAGE_LINE.repeat(owed);
            self.injected = 0;
        }
        while self.injected < self.injecting.len() {
            let n = match Pin::new(&mut self.inner).poll_write(cx, &self.injecting[self.injected..])
            {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.injected += n;
        }
        self.injecting.clear();
        self.injected = 0;
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
        match this.poll_inject(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written
            && n > 0
        {
            this.at_line_start = buf[..n].last() == Some(&b'\n');
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;
    use crate::fake::faults::Transport;

    #[tokio::test]
    async fn garbage_goes_between_lines_never_inside_one() -> std::io::Result<()> {
        let faults = FaultState::new(Transport::Stdio);
        let mut out = InjectingWriter::new(Vec::new(), faults.clone());
        out.write_all(b"{\"a\":").await?;
        // Owed in the middle of a frame: it has to wait for the frame's end.
        faults.push_garbage_line();
        out.write_all(b"1}\n").await?;
        out.write_all(b"{\"b\":2}\n").await?;
        faults.push_garbage_line();
        faults.push_garbage_line();
        out.write_all(b"{\"c\":3}\n").await?;
        let text = String::from_utf8_lossy(&out.inner).to_string();
        assert_eq!(
            text,
            "{\"a\":1}\nthis is not json-rpc\n{\"b\":2}\nthis is not json-rpc\nthis is not json-rpc\n{\"c\":3}\n"
        );
        Ok(())
    }
}
