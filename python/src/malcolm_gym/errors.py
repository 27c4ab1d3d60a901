"""The exceptions the adapter raises. Each says what happened, to which env, and what bound
was exceeded, so a failed training run can be diagnosed from its last line."""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error of the adapter."""


class EnvTimeout(BridgeError):
    """No message from the env within the bound: the env is gone, stuck, or never started."""

    def __init__(self, what: str, timeout_s: float, endpoint: str):
        super().__init__(
            f"no {what} from the env within {timeout_s:g} s on {endpoint}: is the env running "
            "and connected to this endpoint?"
        )
        self.timeout_s = timeout_s
        self.endpoint = endpoint


class EnvExited(BridgeError):
    """A launched env process ended while the adapter was waiting for it."""

    def __init__(self, name: str, returncode: int, log_tail: str):
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with status {returncode}"
        tail = f"; last lines of its log:\n{log_tail}" if log_tail.strip() else ""
        super().__init__(f"env process {name} {how}{tail}")
        self.returncode = returncode
        self.log_tail = log_tail


class EnvClosed(BridgeError):
    """The env closed its session in the middle of an episode."""


class ProtocolError(BridgeError):
    """The env sent something the bridge protocol does not allow. ``code`` is the protocol's
    ``ErrorCode`` name sent back to the env in an ``Error`` reply (e.g. ``MALFORMED``)."""

    def __init__(self, code: str, message: str, env: str = "", request_id: int = 0):
        where = f" from env {env}" if env else ""
        super().__init__(f"protocol error{where} ({code}): {message}")
        self.code = code
        self.detail = message
        # The request id to echo in the Error reply (0 when the bytes did not carry one).
        self.request_id = request_id


class VersionMismatch(ProtocolError):
    """The env speaks another version of the bridge protocol."""


class IncompatibleEnv(BridgeError):
    """An env's rack does not fit the spaces already declared (different node count, STH
    binning, or more pending tasks than ``max_tasks``)."""
