//! A running script's most recent output, kept for whoever asks (`kanade tail`, the dashboard):
//! stdout and stderr in the order written, at most `cap` bytes, oldest dropped first. Offsets
//! count every byte ever written, so a reader that fell behind learns how much it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use kanade_shared::wire::{ChunkStream, OutputChunk, TailReply};

/// Bytes of output one run keeps for watchers.
pub const LIVE_CAP: usize = 64 * 1024;

/// Bytes one reply carries at most (a NATS message is 1 MiB by default).
pub const REPLY_MAX: usize = 256 * 1024;

/// One run's buffer, shared by its output readers and the tail responder.
pub type LiveOutput = Arc<Mutex<OutputRing>>;

#[derive(Debug)]
pub struct OutputRing {
    cap: usize,
    chunks: VecDeque<(ChunkStream, Vec<u8>)>,
    held: usize,
    /// Offset of the first byte held.
    start: u64,
    done: bool,
}

impl OutputRing {
    pub fn new(cap: usize) -> Self {
        OutputRing { cap, chunks: VecDeque::new(), held: 0, start: 0, done: false }
    }

    pub fn shared(cap: usize) -> LiveOutput {
        Arc::new(Mutex::new(Self::new(cap)))
    }

    pub fn push(&mut self, stream: ChunkStream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match self.chunks.back_mut() {
            // Merging keeps a chatty script from costing a chunk per read.
            Some((s, last)) if *s == stream && last.len() < 16 * 1024 => last.extend_from_slice(bytes),
            _ => self.chunks.push_back((stream, bytes.to_vec())),
        }
        self.held += bytes.len();
        while self.held > self.cap {
            let excess = self.held - self.cap;
            let Some((_, front)) = self.chunks.front_mut() else { break };
            let dropped = if front.len() <= excess {
                let n = front.len();
                self.chunks.pop_front();
                n
            } else {
                front.drain(..excess);
                excess
            };
            self.held -= dropped;
            self.start += dropped as u64;
        }
    }

    /// The run is over: what is held is all there will be.
    pub fn end(&mut self) {
        self.done = true;
    }

    /// What a reader that has seen `from` bytes gets next, at most `max` bytes of it.
    pub fn read(&self, from: u64, max: usize) -> TailReply {
        let end = self.start + self.held as u64;
        let begin = from.clamp(self.start, end);
        let mut chunks = Vec::new();
        let mut at = self.start;
        let mut sent = 0usize;
        for (stream, bytes) in &self.chunks {
            let chunk_end = at + bytes.len() as u64;
            if chunk_end > begin && sent < max {
                let skip = begin.saturating_sub(at) as usize;
                let take = (bytes.len() - skip).min(max - sent);
                chunks.push(OutputChunk {
                    stream: *stream,
                    text: String::from_utf8_lossy(&bytes[skip..skip + take]).into_owned(),
                });
                sent += take;
            }
            at = chunk_end;
        }
        let next = begin + sent as u64;
        TailReply {
            schema: kanade_shared::wire::SCHEMA,
            known: true,
            skipped: self.start.saturating_sub(from),
            chunks,
            next,
            done: self.done && next == end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChunkStream::{Stderr, Stdout};

    fn texts(r: &TailReply) -> Vec<(ChunkStream, &str)> {
        r.chunks.iter().map(|c| (c.stream, c.text.as_str())).collect()
    }

    #[test]
    fn reads_follow_offsets_across_streams_and_evictions() {
        struct Case {
            name: &'static str,
            cap: usize,
            writes: &'static [(ChunkStream, &'static str)],
            from: u64,
            max: usize,
            want: &'static [(ChunkStream, &'static str)],
            skipped: u64,
            next: u64,
        }
        let cases = [
            Case {
                name: "everything from the start, streams interleaved in order",
                cap: 100,
                writes: &[(Stdout, "ab"), (Stderr, "E"), (Stdout, "cd")],
                from: 0,
                max: 100,
                want: &[(Stdout, "ab"), (Stderr, "E"), (Stdout, "cd")],
                skipped: 0,
                next: 5,
            },
            Case {
                name: "consecutive writes of one stream merge",
                cap: 100,
                writes: &[(Stdout, "ab"), (Stdout, "cd")],
                from: 0,
                max: 100,
                want: &[(Stdout, "abcd")],
                skipped: 0,
                next: 4,
            },
            Case {
                name: "from the middle of a chunk",
                cap: 100,
                writes: &[(Stdout, "abc"), (Stderr, "XYZ")],
                from: 4,
                max: 100,
                want: &[(Stderr, "YZ")],
                skipped: 0,
                next: 6,
            },
            Case {
                name: "the oldest bytes go first, partly from a chunk",
                cap: 4,
                writes: &[(Stdout, "abc"), (Stderr, "XYZ")],
                from: 0,
                max: 100,
                want: &[(Stdout, "c"), (Stderr, "XYZ")],
                skipped: 2,
                next: 6,
            },
            Case {
                name: "a write larger than the buffer keeps its end",
                cap: 3,
                writes: &[(Stdout, "abcdefg")],
                from: 1,
                max: 100,
                want: &[(Stdout, "efg")],
                skipped: 3,
                next: 7,
            },
            Case {
                name: "a reply stops at max and says where to go on",
                cap: 100,
                writes: &[(Stdout, "abc"), (Stderr, "XYZ")],
                from: 1,
                max: 3,
                want: &[(Stdout, "bc"), (Stderr, "X")],
                skipped: 0,
                next: 4,
            },
            Case {
                name: "caught up: nothing new",
                cap: 100,
                writes: &[(Stdout, "abc")],
                from: 3,
                max: 100,
                want: &[],
                skipped: 0,
                next: 3,
            },
            Case {
                name: "a reader ahead of the writer is brought back to the end",
                cap: 100,
                writes: &[(Stdout, "abc")],
                from: 9,
                max: 100,
                want: &[],
                skipped: 0,
                next: 3,
            },
        ];
        for c in cases {
            let mut ring = OutputRing::new(c.cap);
            for (s, t) in c.writes {
                ring.push(*s, t.as_bytes());
            }
            let r = ring.read(c.from, c.max);
            assert_eq!(texts(&r), c.want, "{}", c.name);
            assert_eq!((r.skipped, r.next), (c.skipped, c.next), "{}", c.name);
            assert!(r.known && !r.done, "{}", c.name);
        }
    }

    #[test]
    fn done_only_once_the_reader_has_everything() {
        let mut ring = OutputRing::new(100);
        ring.push(Stdout, b"abcdef");
        ring.end();
        let partial = ring.read(0, 4);
        assert!(!partial.done);
        let rest = ring.read(partial.next, 4);
        assert_eq!(texts(&rest), [(Stdout, "ef")]);
        assert!(rest.done);
    }
}
