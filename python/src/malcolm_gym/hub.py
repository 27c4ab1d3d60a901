"""The agent side of the bridge for a Python learner: one ZeroMQ ROUTER serving env sessions in
``slots`` (one slot for ``RackEnv``, N for ``RackVectorEnv``).

The hub answers the housekeeping messages itself the moment they arrive (``Hello`` with a
``Welcome``, ``EpisodeEnd`` and ``Close`` with an ``Ack``), validates everything the way
agent-server does, and queues per slot what the learner must see: a ``Step`` waiting for its
``Placement``, an episode end, or a session that closed. Every wait is bounded: ``pump``
raises ``EnvTimeout`` past its deadline, ``EnvExited`` within a poll slice when a launched env
process dies, and ``ProtocolError`` (after sending the env an ``Error`` reply) on bad input.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import zmq

from malcolm.bridge.v1 import bridge_pb2 as pb
from . import protocol
from .errors import BridgeError, EnvTimeout, IncompatibleEnv, ProtocolError

log = logging.getLogger(__name__)

#: How long one poll sleeps at most before the hub checks its launched env processes: a killed
#: env is noticed within this.
POLL_SLICE_S = 0.05
#: Identities of closed or discarded sessions remembered, so their late messages are dropped.
RETIRED_MEMORY = 4096
#: ZeroMQ drops a connection that sends a message above this multiple of the limit before
#: buffering it (memory bound); smaller oversized ones get an Error reply (agent-server's rule).
HARD_LIMIT_FACTOR = 4


@dataclass
class Session:
    """One env connection (one ``Hello``) bound to a slot."""

    identity: bytes
    prefix: list  # routing frames to put before a reply (identity, maybe an empty delimiter)
    hello: pb.Hello
    session_id: int
    slot: int
    speed: list
    episode: int = 0
    next_step: int = 0
    #: (request id, Step) of the Step waiting for a Placement.
    pending: Optional[tuple] = None
    #: Service estimate (ns, speed-1 core) of the tasks placed and not finished yet, by task id:
    #: a drop's reward needs the service it would have had on its node.
    in_flight: dict = field(default_factory=dict)
    steps_in_episode: int = 0

    @property
    def env_id(self) -> str:
        return self.hello.env_id

    @property
    def mid_episode(self) -> bool:
        return self.steps_in_episode > 0 or self.pending is not None


@dataclass
class Event:
    """What a slot's learner must see: ``kind`` is ``"step"``, ``"end"`` or ``"closed"``."""

    kind: str
    session: Session
    step: Optional[pb.Step] = None
    end: Optional[pb.EpisodeEnd] = None
    reason: str = ""


class Hub:
    def __init__(
        self,
        endpoint: str,
        slots: int,
        *,
        max_tasks: int,
        policy_name: str = "python",
        mode: str = "train",
        max_message_bytes: int = protocol.DEFAULT_MAX_MESSAGE_BYTES,
        slot_for_env_id: Optional[Callable[[str], Optional[int]]] = None,
        liveness: Optional[Callable[[], None]] = None,
    ):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # A reply to a peer that is gone raises instead of vanishing silently.
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes * HARD_LIMIT_FACTOR)
        self.sock.setsockopt(zmq.SNDTIMEO, 5_000)
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError as e:
            self.close()
            raise BridgeError(f"cannot bind the agent endpoint {endpoint}: {e}") from None
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.max_message_bytes = max_message_bytes
        self.max_tasks = max_tasks
        self.policy_name = policy_name
        self.mode = mode
        self.policy_version = 0
        self.slot_for_env_id = slot_for_env_id
        self.liveness = liveness
        self.sessions: dict[bytes, Session] = {}
        self.slot_session: list[Optional[Session]] = [None] * slots
        self.queues: list[collections.deque] = [collections.deque() for _ in range(slots)]
        self.retired: collections.OrderedDict = collections.OrderedDict()
        self.rack: Optional[pb.Hello] = None  # the first Hello: fixes node count and spaces
        self._next_session_id = 1

    # --- waiting ---------------------------------------------------------------------------

    def pump(self, until: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Handles incoming messages until ``until()`` holds; raises ``EnvTimeout`` after
        ``timeout_s``, ``EnvExited`` as soon as a launched env dies, ``ProtocolError`` on bad
        input."""
        start = time.monotonic()
        deadline = start + timeout_s
        checked = start
        while not until():
            now = time.monotonic()
            left = deadline - now
            if left <= 0:
                raise EnvTimeout(what, timeout_s, self.endpoint)
            if self.liveness is not None and now - checked >= POLL_SLICE_S:
                self.liveness()
                checked = now
            if self.sock.poll(int(min(left, POLL_SLICE_S) * 1000) + 1, zmq.POLLIN):
                # Drain what is there; a burst of envs answering costs one poll.
                for _ in range(256):
                    try:
                        frames = self.sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._handle(frames)

    def next_event(self, slot: int, timeout_s: float, what: str) -> Event:
        q = self.queues[slot]
        self.pump(lambda: bool(q), timeout_s, what)
        return q.popleft()

    # --- replies the learner decides -------------------------------------------------------

    def place(self, session: Session, targets, *, scores=None, hold_ns=None) -> None:
        """Sends the Placement for the session's pending Step (``targets`` in task order)."""
        if session.pending is None:
            raise BridgeError(f"env {session.env_id} has no Step waiting for a placement")
        request_id, step = session.pending
        for t in step.tasks:
            session.in_flight[t.task_id] = t.service_estimate_ns
        data = protocol.placement_reply(
            request_id, step.step_index, targets, self.policy_version, scores=scores, hold_ns=hold_ns
        )
        session.pending = None
        try:
            self._send(session.prefix, data, session.env_id)
        except BridgeError:
            if self.liveness is not None:
                self.liveness()  # a launched env that died says how
            raise

    def abandon(self, session: Session, message: str) -> None:
        """Refuses the pending Step with an ``UNAVAILABLE`` Error (the env stops its episode) and
        forgets the session."""
        if session.pending is not None:
            request_id, _ = session.pending
            session.pending = None
            try:
                self._send(session.prefix, protocol.error_reply(request_id, "UNAVAILABLE", message), session.env_id)
            except BridgeError:
                pass  # the env is gone already
        self.forget(session)

    def _detach(self, session: Session) -> None:
        """The session is over: its slot is free."""
        self.sessions.pop(session.identity, None)
        if self.slot_session[session.slot] is session:
            self.slot_session[session.slot] = None

    def forget(self, session: Session) -> None:
        """Discards a session: the events it queued that nobody consumed yet go, and its late
        messages are ignored."""
        self._detach(session)
        self._retire(session.identity)
        q = self.queues[session.slot]
        kept = [e for e in q if e.session is not session]
        q.clear()
        q.extend(kept)

    def forget_slot(self, slot: int) -> None:
        """Drops every session of a slot and its queued events (its env process was stopped)."""
        for s in [s for s in self.sessions.values() if s.slot == slot]:
            self.forget(s)
        self.queues[slot].clear()

    def close(self) -> None:
        try:
            self.sock.close(linger=0)
        finally:
            self.ctx.term()

    # --- incoming --------------------------------------------------------------------------

    def _send(self, prefix: list, data: bytes, env_id: str) -> None:
        try:
            self.sock.send_multipart([*prefix, data])
        except zmq.ZMQError as e:
            if e.errno == zmq.EHOSTUNREACH:
                raise BridgeError(f"env {env_id or '?'} disconnected before its reply could be sent") from None
            if e.errno == zmq.EAGAIN:
                raise BridgeError(f"could not send to env {env_id or '?'} within 5 s (its queue is full)") from None
            raise

    def _retire(self, identity: bytes) -> None:
        self.retired[identity] = None
        while len(self.retired) > RETIRED_MEMORY:
            self.retired.popitem(last=False)

    def _refuse(self, prefix: list, request_id: int, err: ProtocolError) -> None:
        """Tells the env what was wrong (best effort), then raises."""
        try:
            self._send(prefix, protocol.error_reply(request_id, err.code, err.detail), "")
        except BridgeError:
            pass
        raise err

    def _handle(self, frames: list) -> None:
        identity, prefix, payload = frames[0], frames[:-1], frames[-1]
        if identity in self.retired:
            # A connection whose session the agent discarded: its late Steps are dropped, but
            # it may start over with a Hello (or say Close).
            try:
                env = protocol.decode(payload, self.max_message_bytes)
            except ProtocolError:
                return
            body = env.WhichOneof("body")
            if body == "close":
                self._send(prefix, protocol.ack_reply(env.request_id), "")
            if body != "hello":
                log.debug("dropping a late %s of a discarded session", body)
                return
            del self.retired[identity]
        session = self.sessions.get(identity)
        env_id = session.env_id if session else ""
        try:
            env = protocol.decode(payload, self.max_message_bytes)
        except ProtocolError as e:
            if env_id:
                e.args = (f"{e.args[0]} [env {env_id}]",)
            self._refuse(prefix, e.request_id, e)
        rid = env.request_id
        body = env.WhichOneof("body")
        if body == "hello":
            self._on_hello(identity, prefix, rid, env.hello, session)
        elif body not in protocol.ENV_BODIES:
            self._refuse(
                prefix,
                rid,
                ProtocolError(
                    "PROTOCOL_VIOLATION",
                    f"{body} is an agent-to-env message; envs send hello, step, episode_end or close",
                    env_id,
                ),
            )
        elif session is None:
            if body == "close":
                self._send(prefix, protocol.ack_reply(rid), "")
                return
            self._refuse(
                prefix,
                rid,
                ProtocolError("PROTOCOL_VIOLATION", f"{body} before any Hello on this connection"),
            )
        elif body == "step":
            self._on_step(session, rid, env.step)
        elif body == "episode_end":
            self._on_end(session, rid, env.episode_end)
        else:
            self._send(prefix, protocol.ack_reply(rid), env_id)
            self._detach(session)
            self.queues[session.slot].append(Event("closed", session, reason=env.close.reason))

    def _on_hello(self, identity, prefix, rid, hello: pb.Hello, session: Optional[Session]) -> None:
        if session is not None:
            self._refuse(
                prefix,
                rid,
                ProtocolError("PROTOCOL_VIOLATION", "second Hello on an open session (send Close first)", session.env_id),
            )
        try:
            protocol.validate_hello(hello)
        except ProtocolError as e:
            self._refuse(prefix, rid, e)
        if self.rack is not None and len(hello.nodes) != len(self.rack.nodes):
            msg = (
                f"env {hello.env_id} has a rack of {len(hello.nodes)} nodes; this adapter's spaces were "
                f"declared for {len(self.rack.nodes)} (from env {self.rack.env_id})"
            )
            try:
                self._send(prefix, protocol.error_reply(rid, "INVALID_ARGUMENT", msg), hello.env_id)
            except BridgeError:
                pass
            raise IncompatibleEnv(msg)
        slot = self._free_slot(hello.env_id)
        if slot is None:
            if self.slot_for_env_id is not None:
                msg = f"env id {hello.env_id!r} is not one of the envs this agent launched"
            else:
                msg = f"all {len(self.slot_session)} env slots of this agent are busy"
            log.warning("refused env %s: %s", hello.env_id, msg)
            try:
                self._send(prefix, protocol.error_reply(rid, "UNAVAILABLE", msg), hello.env_id)
            except BridgeError:
                pass  # e.g. a stopped env's Hello that was still queued
            return
        if self.rack is None:
            self.rack = hello
        s = Session(
            identity=identity,
            prefix=prefix,
            hello=hello,
            session_id=self._next_session_id,
            slot=slot,
            speed=[n.speed if n.speed > 0 else 1.0 for n in hello.nodes],
        )
        self._next_session_id += 1
        try:
            self._send(
                prefix,
                protocol.welcome_reply(rid, s.session_id, self.policy_name, self.policy_version, self.mode),
                hello.env_id,
            )
        except BridgeError:
            log.warning("env %s left before its Welcome", hello.env_id)
            self._retire(identity)
            return
        self.sessions[identity] = s
        self.slot_session[slot] = s
        log.info("env %s connected (slot %d, scenario %s, seed %d)", hello.env_id, slot, hello.scenario, hello.seed)

    def _free_slot(self, env_id: str) -> Optional[int]:
        if self.slot_for_env_id is not None:
            # Launched envs: each process has its slot; anything else is turned away.
            slot = self.slot_for_env_id(env_id)
            return slot if slot is not None and self.slot_session[slot] is None else None
        for i, s in enumerate(self.slot_session):
            if s is None:
                return i
        return None

    def _violation(self, session: Session, rid: int, message: str, code: str = "PROTOCOL_VIOLATION") -> None:
        self._refuse(session.prefix, rid, ProtocolError(code, message, session.env_id))

    def _on_step(self, s: Session, rid: int, step: pb.Step) -> None:
        if s.pending is not None:
            self._violation(s, rid, f"Step {step.step_index} while Step {s.pending[1].step_index} waits for its Placement")
        if step.episode < s.episode:
            self._violation(s, rid, f"episode {step.episode} goes back (current {s.episode})")
        if step.episode > s.episode:
            s.episode, s.next_step = step.episode, 0
        if step.step_index != s.next_step:
            self._violation(s, rid, f"step index {step.step_index} in episode {step.episode}, expected {s.next_step}")
        try:
            protocol.validate_step(step, len(s.hello.nodes), s.env_id)
        except ProtocolError as e:
            self._refuse(s.prefix, rid, e)
        if len(step.tasks) > self.max_tasks:
            msg = (
                f"Step {step.step_index} has {len(step.tasks)} pending tasks; the action space has room for "
                f"max_tasks={self.max_tasks} (raise max_tasks, or lower the env's decision batch)"
            )
            try:
                self._send(s.prefix, protocol.error_reply(rid, "INVALID_ARGUMENT", msg), s.env_id)
            except BridgeError:
                pass
            raise IncompatibleEnv(f"env {s.env_id}: {msg}")
        s.next_step += 1
        s.steps_in_episode += 1
        s.pending = (rid, step)
        self.queues[s.slot].append(Event("step", s, step=step))

    def _on_end(self, s: Session, rid: int, end: pb.EpisodeEnd) -> None:
        if s.pending is not None:
            self._violation(s, rid, f"EpisodeEnd while Step {s.pending[1].step_index} waits for its Placement")
        if end.episode < s.episode:
            self._violation(s, rid, f"EpisodeEnd for past episode {end.episode} (current {s.episode})")
        try:
            protocol.validate_outcomes(end.outcomes, len(s.hello.nodes), s.env_id)
        except ProtocolError as e:
            self._refuse(s.prefix, rid, e)
        self._send(s.prefix, protocol.ack_reply(rid), s.env_id)
        s.episode, s.next_step, s.steps_in_episode = end.episode + 1, 0, 0
        self.queues[s.slot].append(Event("end", s, end=end))
