"""Bit-exact ports of the random streams the Rust baselines draw from, so a Python port of a
randomised baseline makes the same choices as the Rust one on the same seed:

- ``ChaCha8Rng.seed_from_u64`` (rand_chacha 0.9 on rand_core 0.9): the u64 is expanded to the
  32-byte key with PCG32, the ChaCha block function runs 8 rounds with a 64-bit block counter
  and a zero stream id, and output is buffered four blocks (64 words) at a time.
- ``random_range`` (rand 0.9, without the ``unbiased`` feature): Lemire's widening multiply
  with one extra draw to reduce bias, on u32 for ranges of u32 and of usize below 2^32.

Pure Python: a few microseconds per draw, plenty for baselines that draw a few times per task.
"""

from __future__ import annotations

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
# "expand 32-byte k"
CHACHA_CONSTANTS = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)
BUF_BLOCKS = 4


def pcg32_seed_words(state: int) -> list:
    """rand_core's ``SeedableRng::seed_from_u64``: eight PCG32 outputs, as little-endian words."""
    mul, inc = 6364136223846793005, 11634580027462260723
    words = []
    for _ in range(8):
        state = (state * mul + inc) & M64
        xorshifted = (((state >> 18) ^ state) >> 27) & M32
        rot = state >> 59
        words.append(((xorshifted >> rot) | (xorshifted << ((-rot) & 31))) & M32)
    return words


def chacha_block(key: list, counter: int, stream: int, rounds: int) -> list:
    """One 16-word ChaCha block (Bernstein's layout: 64-bit counter in words 12-13, 64-bit stream
    id in words 14-15)."""
    init = [
        *CHACHA_CONSTANTS,
        *key,
        counter & M32, (counter >> 32) & M32,
        stream & M32, (stream >> 32) & M32,
    ]
    x = list(init)

    def qr(a, b, c, d):
        xa, xb, xc, xd = x[a], x[b], x[c], x[d]
        xa = (xa + xb) & M32; xd ^= xa; xd = ((xd << 16) | (xd >> 16)) & M32
        xc = (xc + xd) & M32; xb ^= xc; xb = ((xb << 12) | (xb >> 20)) & M32
        xa = (xa + xb) & M32; xd ^= xa; xd = ((xd << 8) | (xd >> 24)) & M32
        xc = (xc + xd) & M32; xb ^= xc; xb = ((xb << 7) | (xb >> 25)) & M32
        x[a], x[b], x[c], x[d] = xa, xb, xc, xd

    for _ in range(rounds // 2):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return [(a + b) & M32 for a, b in zip(x, init)]


class ChaChaRng:
    """rand_chacha's ChaCha{8,12,20}Rng (``BlockRng`` over four-block refills)."""

    def __init__(self, key_words: list, rounds: int = 8):
        if len(key_words) != 8:
            raise ValueError("a ChaCha key is 8 words")
        self.key = list(key_words)
        self.rounds = rounds
        self.counter = 0
        self.results: list = []
        self.index = 0

    @classmethod
    def seed_from_u64(cls, seed: int, rounds: int = 8) -> "ChaChaRng":
        return cls(pcg32_seed_words(seed & M64), rounds)

    def _refill(self) -> None:
        out = []
        for b in range(BUF_BLOCKS):
            out.extend(chacha_block(self.key, (self.counter + b) & M64, 0, self.rounds))
        self.counter = (self.counter + BUF_BLOCKS) & M64
        self.results = out
        self.index = 0

    def next_u32(self) -> int:
        if self.index >= len(self.results):
            self._refill()
        v = self.results[self.index]
        self.index += 1
        return v

    def next_u64(self) -> int:
        # rand_core's BlockRng::next_u64, including the read across a refill.
        n = len(self.results)
        i = self.index
        if i < n - 1:
            self.index += 2
            return self.results[i] | (self.results[i + 1] << 32)
        if i >= n:
            self._refill()
            self.index = 2
            return self.results[0] | (self.results[1] << 32)
        lo = self.results[n - 1]
        self._refill()
        self.index = 1
        return lo | (self.results[0] << 32)

    def random_range(self, low: int, high: int) -> int:
        """``rng.random_range(low..high)`` for u32, and for usize ranges below 2^32 (rand 0.9
        samples those as u32 for portability)."""
        if not low < high:
            raise ValueError(f"empty range {low}..{high}")
        hi_incl = high - 1
        if hi_incl > M32:
            raise ValueError("ranges above 2^32 are not ported")
        rng = (hi_incl - low + 1) & M32
        if rng == 0:
            return low + self.next_u32()
        m = self.next_u32() * rng
        result, lo_order = m >> 32, m & M32
        if lo_order > ((-rng) & M32):
            new_hi = (self.next_u32() * rng) >> 32
            if lo_order + new_hi > M32:  # checked_add overflowed: round up
                result += 1
        return low + result


def sample_distinct(rng: ChaChaRng, n: int, d: int) -> list:
    """``policies::baselines::sample_distinct``: ``min(d, n)`` distinct node ids, uniformly."""
    d = min(d, n)
    out: list = []
    if d * 4 <= n:
        # Rejection: cheap when d is small next to n (the usual case).
        while len(out) < d:
            c = rng.random_range(0, n)
            if c not in out:
                out.append(c)
    else:
        # Partial Fisher-Yates.
        all_nodes = list(range(n))
        for i in range(d):
            j = rng.random_range(i, n)
            all_nodes[i], all_nodes[j] = all_nodes[j], all_nodes[i]
        out.extend(all_nodes[:d])
    return out
