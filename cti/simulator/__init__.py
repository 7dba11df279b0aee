"""SIMULATED PBX: an AMI server for tests, benchmarks and demos (never a real Asterisk).

Three ways to use it:

* generator: ``SimulatedPbx(config=PbxConfig(tech="PJSIP"), time_scale=0.01)`` then
  ``pbx.inbound_call(...)`` / ``pbx.click_to_call(...)`` or ``Originate`` actions; list
  actions answer from the live model (resync tests);
* replay: ``SimulatedPbx(replay="trace.ami", chunking=Chunking(low=1, high=4096))`` streams
  a recorded trace byte for byte after login (``multiply()`` builds bigger loads);
* misbehaviour: ``drop_connections()``, ``restart()``, ``ping_enabled = False``,
  ``response_delay``, ``silent``; outside numbers that are busy or never answer: AstDB
  ``lab/outside/<number>`` = ``busy`` / ``noanswer`` (``pbx.state.db``).

``python -m cti.simulator --help`` runs it by hand.
"""

from cti.simulator.actions import parse_callerid
from cti.simulator.calls import CallEngine, Leg, SimCall
from cti.simulator.model import Agent, Channel, PbxConfig, PbxState, QueueConfig
from cti.simulator.replay import Chunking, Trace, multiply, renumber, split_messages
from cti.simulator.server import SimulatedPbx
from cti.simulator.session import Session

__all__ = [
    "Agent",
    "CallEngine",
    "Channel",
    "Chunking",
    "Leg",
    "PbxConfig",
    "PbxState",
    "QueueConfig",
    "Session",
    "SimCall",
    "SimulatedPbx",
    "Trace",
    "multiply",
    "parse_callerid",
    "renumber",
    "split_messages",
]
