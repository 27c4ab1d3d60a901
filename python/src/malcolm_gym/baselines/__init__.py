"""Python ports of the Rust baselines in ``policies/src/baselines/``, line-by-line comparable
with them and bit-exact in their random choices (``rng``), for parity checks of the adapter
and as reference agents."""

from .simple import RandomPolicy, RoundRobin
from .slack_greedy import SlackGreedy

__all__ = ["RandomPolicy", "RoundRobin", "SlackGreedy"]
