"""A seeded viewing-session simulator with a hidden ground truth.

params -> world (users, titles) -> sessions (truth + events) -> encoded records (+ invalid
extras and duplicates) and a manifest:

- :mod:`.world`     users with latent tastes and device/network profiles; titles
- :mod:`.truth`     the hidden behaviour model (rebuffering, completion, rating); scenarios
- :mod:`.sessions`  one session planned from ``play`` to its end, with its ``SessionTruth``
- :mod:`.corrupt`   invalid records of known kinds with their expected dead-letter reasons
- :mod:`.stream`    interleaving sessions into one stream: :func:`simulate_events`
- :mod:`.manifest`  what was sent, as JSON

>>> from streamproc.config import load_settings
>>> sim = simulate_events(SimParams(n_events=20, seed=1, start_time_ms=1_700_000_000_000),
...                       load_settings())
>>> [r.kind for r in sim][:3]
['valid', 'valid', 'valid']
"""

from __future__ import annotations

from streamproc.simulate.corrupt import RULES, InvalidRecord
from streamproc.simulate.manifest import Manifest
from streamproc.simulate.sessions import SessionTruth
from streamproc.simulate.stream import RecordKind, SimParams, SimRecord, Simulation, simulate_events
from streamproc.simulate.truth import SCENARIOS, Scenario, StationaryScenario, TruthCoefficients
from streamproc.simulate.world import World, build_world

__all__ = [
    "RULES",
    "SCENARIOS",
    "InvalidRecord",
    "Manifest",
    "RecordKind",
    "Scenario",
    "SessionTruth",
    "SimParams",
    "SimRecord",
    "Simulation",
    "StationaryScenario",
    "TruthCoefficients",
    "World",
    "build_world",
    "simulate_events",
]
