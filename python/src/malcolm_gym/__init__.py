"""Bring your own agent: Gymnasium environments over the Malcolm-Strict bridge protocol.

``RackEnv`` (one env session) and ``RackVectorEnv`` (N sessions on one endpoint) bind the
agent side of the bridge (a ZeroMQ ROUTER), launch ``agent-server env`` (the embedded rack
simulator) or an OMNeT++ run against it, and map the env's lockstep onto ``reset``/``step``.
Importing the package registers ``malcolm/Rack-v0``::

    import gymnasium
    env = gymnasium.make("malcolm_gym:malcolm/Rack-v0", scenario="hetero")
"""

import gymnasium

from .env import RackEnv
from .errors import (
    BridgeError,
    EnvClosed,
    EnvExited,
    EnvTimeout,
    IncompatibleEnv,
    ProtocolError,
    VersionMismatch,
)
from .launcher import EnvLauncher, find_agent_server
from .rewards import RewardConfig
from .vector import RackVectorEnv

ENV_ID = "malcolm/Rack-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=ENV_ID,
        entry_point="malcolm_gym.env:RackEnv",
        vector_entry_point="malcolm_gym.vector:RackVectorEnv",
    )

__all__ = [
    "ENV_ID",
    "BridgeError",
    "EnvClosed",
    "EnvExited",
    "EnvLauncher",
    "EnvTimeout",
    "IncompatibleEnv",
    "ProtocolError",
    "RackEnv",
    "RackVectorEnv",
    "RewardConfig",
    "VersionMismatch",
    "find_agent_server",
]
