"""Bridge protocol v1 on the agent side: the generated message classes, checked decoding of
envelopes (size, version, body), building replies, and the validation every agent owes the
env (the same checks as the server's ``serve/src/session/``). No sockets here."""

from __future__ import annotations

import math

from google.protobuf.message import DecodeError

from malcolm.bridge.v1 import bridge_pb2 as pb
from .errors import ProtocolError, VersionMismatch

#: Version of the bridge protocol this package speaks (``PROTOCOL_VERSION_CURRENT``).
PROTOCOL_VERSION = pb.PROTOCOL_VERSION_CURRENT
#: Largest envelope accepted: agent-server's limit (a 256-node Step with every GST fits).
DEFAULT_MAX_MESSAGE_BYTES = 8 << 20
#: Largest rack the protocol addresses (the heartbeat's node id is a u8).
MAX_NODES = 256
#: Largest number of pending tasks in one Step that is not refused outright.
MAX_TASKS_PER_STEP = 1 << 16
#: Size of one heartbeat payload in a Global State Table.
HEARTBEAT_LEN = 16
#: The one STH binning v1 defines (design.md section 4): M, fine width, critical slack.
STH_CONFIG = (16, 2, 20)

ENV_BODIES = ("hello", "step", "episode_end", "close")


def code_name(code: int) -> str:
    """``ErrorCode`` number -> short name (``MALFORMED``)."""
    try:
        return pb.ErrorCode.Name(code).removeprefix("ERROR_CODE_")
    except ValueError:
        return f"UNKNOWN_{code}"


def decode(data: bytes, max_len: int = DEFAULT_MAX_MESSAGE_BYTES) -> pb.Envelope:
    """Decodes one envelope, checking size, version and body. Raises ``ProtocolError`` (code
    ``OVERSIZED`` or ``MALFORMED``) or ``VersionMismatch``, whose ``request_id`` is the id to
    echo in the Error reply."""
    if len(data) > max_len:
        raise ProtocolError("OVERSIZED", f"message of {len(data)} bytes exceeds the limit of {max_len}")
    env = pb.Envelope()
    try:
        env.ParseFromString(data)
    except DecodeError as exc:
        raise ProtocolError("MALFORMED", f"bytes do not decode as a bridge Envelope ({exc})") from None
    if env.protocol_version != PROTOCOL_VERSION:
        raise VersionMismatch(
            "VERSION_MISMATCH",
            f"protocol version {env.protocol_version} not supported (this agent speaks {PROTOCOL_VERSION})",
            request_id=env.request_id,
        )
    if env.WhichOneof("body") is None:
        raise ProtocolError("MALFORMED", f"envelope {env.request_id} has no body", request_id=env.request_id)
    return env


def error_reply(request_id: int, code: str, message: str) -> bytes:
    env = pb.Envelope(protocol_version=PROTOCOL_VERSION, request_id=request_id)
    env.error.code = pb.ErrorCode.Value("ERROR_CODE_" + code)
    env.error.message = message
    return env.SerializeToString()


def welcome_reply(request_id: int, session_id: int, policy: str, policy_version: int, mode: str) -> bytes:
    env = pb.Envelope(protocol_version=PROTOCOL_VERSION, request_id=request_id)
    w = env.welcome
    w.session_id = session_id
    w.policy = policy
    w.policy_version = policy_version
    # The mode by name (what v1 readers look at) and as the enum; the version this agent chose.
    w.mode_name = mode
    w.mode = pb.Mode.Value("MODE_" + mode.upper())
    w.protocol_version = PROTOCOL_VERSION
    return env.SerializeToString()


def ack_reply(request_id: int) -> bytes:
    env = pb.Envelope(protocol_version=PROTOCOL_VERSION, request_id=request_id)
    env.ack.SetInParent()
    return env.SerializeToString()


def placement_reply(
    request_id: int,
    step_index: int,
    targets,
    policy_version: int,
    scores=None,
    hold_ns=None,
) -> bytes:
    env = pb.Envelope(protocol_version=PROTOCOL_VERSION, request_id=request_id)
    p = env.placement
    p.step_index = step_index
    p.targets.extend(targets)
    p.policy_version = policy_version
    if scores is not None:
        p.scores.extend(scores)
    if hold_ns is not None:
        p.hold_ns.extend(hold_ns)
    # An empty Placement (a Step with no tasks) must still be a Placement on the wire.
    p.SetInParent()
    return env.SerializeToString()


def validate_hello(h: pb.Hello) -> None:
    """agent-server's ``validate_hello``: rack size, node ids in order, sane nodes, an STH
    configuration this agent reads. Raises ``ProtocolError``."""
    n = len(h.nodes)
    if n == 0 or n > MAX_NODES:
        raise ProtocolError("INVALID_ARGUMENT", f"rack of {n} nodes; the protocol supports 1..={MAX_NODES}", h.env_id)
    for i, node in enumerate(h.nodes):
        if node.node_id != i:
            raise ProtocolError("INVALID_NODE_ID", f"nodes[{i}] has node_id {node.node_id} (must be {i})", h.env_id)
        if node.cores == 0 or not (math.isfinite(node.speed) and node.speed > 0.0):
            raise ProtocolError(
                "INVALID_ARGUMENT",
                f"node {i}: cores {node.cores} speed {node.speed} (need cores >= 1, speed > 0)",
                h.env_id,
            )
    if h.protocol_versions and PROTOCOL_VERSION not in h.protocol_versions:
        raise ProtocolError(
            "VERSION_MISMATCH",
            f"the env speaks protocol versions {list(h.protocol_versions)}, this agent {PROTOCOL_VERSION}",
            h.env_id,
        )
    if not h.HasField("sth"):
        raise ProtocolError("INVALID_ARGUMENT", "Hello without an STH config", h.env_id)
    got = (h.sth.buckets, h.sth.fine_width_us, h.sth.critical_us)
    if got != STH_CONFIG:
        raise ProtocolError(
            "INVALID_ARGUMENT",
            f"STH config (buckets, fine_width_us, critical_us) = {got} is not the one this agent reads {STH_CONFIG}",
            h.env_id,
        )


def validate_step(step: pb.Step, n: int, env_id: str = "") -> None:
    """agent-server's ``validate_step``: node states in order, STH and GST shapes, task
    origins and outcome node ids inside the rack. Raises ``ProtocolError``."""
    if len(step.nodes) != n:
        raise ProtocolError("INVALID_ARGUMENT", f"Step has {len(step.nodes)} node states for a rack of {n}", env_id)
    if len(step.tasks) > MAX_TASKS_PER_STEP:
        raise ProtocolError("INVALID_ARGUMENT", f"{len(step.tasks)} pending tasks (limit {MAX_TASKS_PER_STEP})", env_id)
    buckets = STH_CONFIG[0]
    for i, ns in enumerate(step.nodes):
        if ns.node_id != i:
            raise ProtocolError("INVALID_NODE_ID", f"nodes[{i}] has node_id {ns.node_id} (must be {i} of {n})", env_id)
        if ns.HasField("sth") and len(ns.sth.buckets) != buckets:
            raise ProtocolError(
                "INVALID_ARGUMENT", f"node {i}: STH with {len(ns.sth.buckets)} buckets (need {buckets})", env_id
            )
        if ns.HasField("gst") and (len(ns.gst.heartbeats) != n * HEARTBEAT_LEN or len(ns.gst.age_ns) != n):
            raise ProtocolError(
                "INVALID_ARGUMENT",
                f"node {i}: GST of {len(ns.gst.heartbeats)} bytes and {len(ns.gst.age_ns)} ages "
                f"(need {n * HEARTBEAT_LEN} and {n})",
                env_id,
            )
    for t in step.tasks:
        if t.origin >= n:
            raise ProtocolError("INVALID_NODE_ID", f"task {t.task_id} has origin {t.origin} in a rack of {n}", env_id)
    validate_outcomes(step.outcomes, n, env_id)


def validate_outcomes(outcomes, n: int, env_id: str = "") -> None:
    for o in outcomes:
        if o.node_id >= n or o.origin >= n:
            raise ProtocolError(
                "INVALID_NODE_ID",
                f"outcome of task {o.task_id} names node {o.node_id} / origin {o.origin} in a rack of {n}",
                env_id,
            )
