"""Matching predictions to send times; sorting py-spy stacks into steps."""

from __future__ import annotations

from benchmarks.latency import LatencyPoint, match_latencies
from benchmarks.pyspy import IDLE, classify_stack, classify_stacks, parse_collapsed

LOOP = [
    "_run_module_as_main (<frozen runpy>:198)",
    "run_worker (agents/worker.py:28)",
    "Worker.execute_from_commandline (mode/worker.py:264)",
    "BaseEventLoop._run_once (asyncio/base_events.py:1922)",
    "Handle._run (asyncio/events.py:80)",
]
AGENT = [*LOOP, "Agent._execute_actor (faust/agents/agent.py:698)"]


def test_latency_from_prediction_timestamps() -> None:
    predictions = [
        ("play-1", 1_000_120, 0.100),
        ("play-1", 1_000_121, 0.100),  # one prediction per model
        ("play-2", 1_000_900, 0.850),
        ("other-run", 5, 0.0),  # a prediction of an event this point did not send
    ]
    record, agent, sent = match_latencies(predictions, {"play-1": 1_000_000, "play-2": 1_000_300})
    assert record == [120.0, 121.0, 600.0]
    assert agent == [100.0, 100.0, 850.0]
    assert sent == [1_000_000, 1_000_000, 1_000_300]
    point = LatencyPoint(0.5, 500.0, 10.0, 5000, 600, 0.0, record, agent, sent)
    figures = point.as_dict()
    assert figures["achieved_rate_eps"] == 500.0
    assert figures["predictions_matched"] == 3
    assert figures["latency_ms"]["p50"] == 121.0
    assert figures["latency_ms_max"] == 600.0


def test_empty_latency_point() -> None:
    figures = LatencyPoint(0.8, 800.0, 0.0, 0, 0, 0.0).as_dict()
    assert figures["latency_ms"] is None
    assert figures["latency_p50_ms_by_quarter"] == []


def test_a_stall_shows_in_its_quarter() -> None:
    sent = list(range(0, 4000, 10))  # inputs sent over 4 s
    latencies = [3000.0 if 2000 <= s < 3000 else 100.0 for s in sent]
    point = LatencyPoint(0.5, 100.0, 4.0, 400, 400, 0.0, latencies, latencies, sent)
    assert point.by_quarter() == [100.0, 100.0, 3000.0, 100.0]


def test_agent_steps() -> None:
    ingest = [*AGENT, "register_ingest.<locals>.ingest (agents/ingest.py:84)"]
    model = [*AGENT, "register_model.<locals>.score (agents/model.py:330)"]
    cases = {
        "ingest agent: decode": [
            *ingest,
            "IngestProcessor.process (streamproc/ingest/process.py:145)",
            "EventDecoder.decode (streamproc/ingest/decode.py:107)",
        ],
        "ingest agent: Faust send (topic.send per record)": [
            *ingest,
            "Topic.send (faust/topics.py:190)",
            "AIOKafkaProducer.send (aiokafka/producer/producer.py:470)",
        ],
        "ingest agent: de-duplication table changelog (Faust send)": [
            *ingest,
            "IngestProcessor.process (streamproc/ingest/process.py:150)",
            "Deduplicator.is_duplicate (streamproc/ingest/dedupe.py:70)",
            "register_ingest.<locals>.persist (agents/ingest.py:55)",
            "Collection.send_changelog (faust/tables/base.py:300)",
        ],
        "model agent: River models (predict, learn)": [
            *model,
            "PartitionLearner.process (streamproc/learning/partition.py:220)",
            "LogisticRegression.learn_one (river/linear_model/log_reg.py:90)",
        ],
        "model agent: features": [
            *model,
            "PartitionLearner._play (streamproc/learning/partition.py:300)",
            "engagement_features (streamproc/features/extract.py:120)",
        ],
        "logging": [*model, "Logger.warning (logging/__init__.py:1501)"],
        "Faust stream (per-message iteration, acks, sensors)": [
            *ingest,
            "Stream.take_events (faust/streams.py:400)",
        ],
    }
    for expected, frames in cases.items():
        assert classify_stack(frames) == expected


def test_loop_steps() -> None:
    cases = {
        "aiokafka producer: sending batches": [
            *LOOP,
            "Sender._send_produce_req (aiokafka/producer/sender.py:288)",
        ],
        "Faust consumer: fetch and dispatch": [
            *LOOP,
            "Service._execute_task (mode/services.py:878)",
            "Fetcher._fetcher (faust/transport/consumer.py:177)",
        ],
        "asyncio event loop (scheduling, callbacks)": LOOP,
        IDLE: [*LOOP[:-1], "EpollSelector.select (selectors.py:468)"],
        "lag monitor": [*LOOP, "LagMonitor.run (streamproc/observe/lag_monitor.py:80)"],
        "control records and snapshots follower (thread)": [
            "Thread._bootstrap (threading.py:1002)",
            "_WorkItem.run (concurrent/futures/thread.py:58)",
            "ControlFollower.poll (agents/drift.py:142)",
        ],
    }
    for expected, frames in cases.items():
        assert classify_stack(frames) == expected
    idle_pool_thread = [
        "Thread._bootstrap (threading.py:1002)",
        "Thread.run (threading.py:982)",
        "_worker (concurrent/futures/thread.py:81)",
    ]
    assert classify_stack(idle_pool_thread) == IDLE
    # no dispatch frame: a coroutine resumed by C code (the stack starts at the agent)
    partial = [
        "Agent._execute_actor (faust/agents/agent.py:698)",
        "register_ingest.<locals>.ingest (agents/ingest.py:96)",
    ]
    assert classify_stack(partial) == "ingest agent: agent loop body"


def test_collapsed_stacks_are_counted() -> None:
    text = (
        ";".join([*LOOP, "Sender._send_produce_req (aiokafka/producer/sender.py:288)"])
        + " 7\n"
        + ";".join(LOOP)
        + " 3\n"
        + "garbage line\n"
        + ";".join([*LOOP, "Sender._send_produce_req (aiokafka/producer/sender.py:300)"])
        + " 2\n"
    )
    stacks = parse_collapsed(text)
    assert [n for _, n in stacks] == [7, 3, 2]
    counts = classify_stacks(stacks)
    assert counts == {
        "aiokafka producer: sending batches": 9,
        "asyncio event loop (scheduling, callbacks)": 3,
    }


def test_paced_cpu_per_event_counts_the_warm_up_records_too() -> None:
    # The CPU meter runs from the warm-up's first send, so the warm-up's records divide it too.
    point = LatencyPoint(0.5, 500.0, 10.0, 5000, 600, 0.0, worker_cpu_s=2.0, warmup_sent=3000)
    assert point.as_dict()["worker_cpu_us_per_event"] == 250.0
