use kanade_shared::wire::{ChunkStream, OutputChunk, TailEvent, TailReply};
use kanade_shared::{ExecId, ResultId};

use super::{AgentAnswer, Stored, Watch};
use crate::db::queries::ResultRow;

fn reply(chunks: &[(ChunkStream, &str)], skipped: u64, next: u64, done: bool) -> AgentAnswer {
    AgentAnswer::Output(TailReply {
        schema: 1,
        known: true,
        skipped,
        chunks: chunks.iter().map(|(s, t)| OutputChunk { stream: *s, text: (*t).into() }).collect(),
        next,
        done,
    })
}

fn unknown() -> AgentAnswer {
    AgentAnswer::Output(TailReply::unknown())
}

fn stored(status: Option<&str>, exec_status: &str) -> Stored {
    let exec = ExecId::new();
    let pc: kanade_shared::PcId = "PC-1".parse().unwrap();
    Stored {
        result: status.map(|status| ResultRow {
            result_id: ResultId::derive(exec, &pc),
            exec_id: exec,
            pc_id: pc.clone(),
            job_id: "job".parse().unwrap(),
            version: "1".into(),
            status: status.into(),
            exit_code: (status == "succeeded").then_some(0),
            skip_reason: None,
            message: None,
            stdout: "stored out\n".into(),
            stderr: String::new(),
            truncated: false,
            attempt: 1,
            started_ms: None,
            finished_ms: None,
            title: None,
            facts_error: None,
        }),
        exec_status: exec_status.into(),
    }
}

fn out(text: &str) -> TailEvent {
    TailEvent::Output { stream: ChunkStream::Stdout, text: text.into() }
}

fn end(status: &str, exit_code: Option<i64>, message: Option<&str>) -> TailEvent {
    TailEvent::End { status: status.into(), exit_code, message: message.map(Into::into) }
}

fn waiting(reason: &str) -> TailEvent {
    TailEvent::Waiting { reason: reason.into() }
}

const NOT_STARTED: &str =
    "not started on this PC yet (queued, waiting out its jitter or wave, or the PC is away)";

#[test]
fn each_poll_becomes_events_and_the_stream_ends_with_the_result() {
    struct Case {
        name: &'static str,
        /// Bytes seen before this poll.
        from: u64,
        answer: AgentAnswer,
        stored: Option<Stored>,
        want: Vec<TailEvent>,
        ended: bool,
    }
    let cases = [
        Case {
            name: "output while running passes through, no database read",
            from: 0,
            answer: reply(&[(ChunkStream::Stdout, "a\n"), (ChunkStream::Stderr, "e\n")], 0, 4, false),
            stored: None,
            want: vec![out("a\n"), TailEvent::Output { stream: ChunkStream::Stderr, text: "e\n".into() }],
            ended: false,
        },
        Case {
            name: "a watcher that fell behind is told how much it missed",
            from: 2,
            answer: reply(&[(ChunkStream::Stdout, "z")], 10, 13, false),
            stored: None,
            want: vec![TailEvent::Skipped { bytes: 10 }, out("z")],
            ended: false,
        },
        Case {
            name: "the last chunk and the stored result end it",
            from: 4,
            answer: reply(&[(ChunkStream::Stdout, "bye\n")], 0, 8, true),
            stored: Some(stored(Some("succeeded"), "completed")),
            want: vec![out("bye\n"), end("succeeded", Some(0), None)],
            ended: true,
        },
        Case {
            name: "the run ended but its result is not stored yet: wait",
            from: 4,
            answer: reply(&[], 0, 4, true),
            stored: Some(stored(Some("running"), "running")),
            want: vec![waiting("the run ended; waiting for its result to be stored")],
            ended: false,
        },
        Case {
            name: "finished before anyone watched: the stored output, then the end",
            from: 0,
            answer: unknown(),
            stored: Some(stored(Some("failed"), "failed")),
            want: vec![out("stored out\n"), end("failed", None, None)],
            ended: true,
        },
        Case {
            name: "already shown live: the stored output is not repeated",
            from: 9,
            answer: unknown(),
            stored: Some(stored(Some("succeeded"), "completed")),
            want: vec![end("succeeded", Some(0), None)],
            ended: true,
        },
        Case {
            name: "not started yet",
            from: 0,
            answer: unknown(),
            stored: Some(stored(None, "running")),
            want: vec![waiting(NOT_STARTED)],
            ended: false,
        },
        Case {
            name: "the agent is away",
            from: 0,
            answer: AgentAnswer::Unreachable("is not connected".into()),
            stored: Some(stored(Some("running"), "running")),
            want: vec![waiting("the agent is not connected")],
            ended: false,
        },
        Case {
            name: "the execution is over and this PC never reported",
            from: 0,
            answer: AgentAnswer::Unreachable("is not connected".into()),
            stored: Some(stored(None, "expired")),
            want: vec![end("expired", None, Some("the execution ended without a result from this PC"))],
            ended: true,
        },
    ];
    for c in cases {
        assert_eq!(Watch::needs_store(&c.answer), c.stored.is_some(), "{}: needs_store", c.name);
        let mut watch = Watch { from: c.from, ..Default::default() };
        let (events, ended) = watch.step(c.answer, c.stored.as_ref());
        assert_eq!(events, c.want, "{}", c.name);
        assert_eq!(ended, c.ended, "{}", c.name);
    }
}

#[test]
fn a_waiting_reason_is_said_once_until_it_changes() {
    let mut watch = Watch::default();
    let not_started = stored(None, "running");
    assert_eq!(watch.step(unknown(), Some(&not_started)).0, vec![waiting(NOT_STARTED)]);
    assert_eq!(watch.step(unknown(), Some(&not_started)).0, vec![]);
    assert_eq!(watch.step(reply(&[(ChunkStream::Stdout, "x")], 0, 1, false), None).0, vec![out("x")]);
    let away = AgentAnswer::Unreachable("is not connected".into());
    assert_eq!(watch.step(away.clone(), Some(&not_started)).0, vec![waiting("the agent is not connected")]);
    assert_eq!(watch.step(away, Some(&not_started)).0, vec![]);
}
