"""The Rust random streams the baseline ports must reproduce bit for bit, against values printed
by rand 0.9.5 / rand_chacha 0.9.0 (the workspace's versions, without rand's ``unbiased``
feature) with this program::

    use rand::{Rng, RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    fn main() {
        // 1. raw words for seed 1 and seed 900000001
        for seed in [1u64, 900_000_001] {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            let w: Vec<u32> = (0..4).map(|_| r.next_u32()).collect();
            println!("words {seed} {:?}", w);
        }
        // 2. next_u64 across the 64-word buffer boundary
        let mut r = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..63 { r.next_u32(); }
        println!("u64_across {}", r.next_u64());
        println!("u32_after {}", r.next_u32());
        // 3. random_range u32 0..n and usize i..n, mixed
        let mut r = ChaCha8Rng::seed_from_u64(42);
        let mut v = Vec::new();
        for k in 0..200u32 {
            let n = [5u32, 16, 3, 64, 1000, 7][(k % 6) as usize];
            if k % 3 == 0 { v.push(r.random_range(0..n) as u64) } else { v.push(r.random_range((k as usize % 4)..(n as usize + 4)) as u64) }
        }
        println!("ranges {:?}", v);
        // 4. a huge range that exercises the bias-reduction branch often
        let mut r = ChaCha8Rng::seed_from_u64(3);
        let v: Vec<u32> = (0..50).map(|_| r.random_range(0..3_000_000_000u32)).collect();
        println!("big {:?}", v);
    }

and the ChaCha20 block function against its published test vectors (rand_chacha's own tests).
"""

import struct

from malcolm_gym.baselines.rng import ChaChaRng, sample_distinct

RANGES = [1, 13, 2, 60, 775, 5, 1, 13, 5, 18, 645, 4, 1, 6, 2, 51, 630, 8, 4, 7, 3, 32, 381, 10, 2, 19, 5, 37, 898, 8, 1, 6, 6, 36, 106, 4, 0, 9, 3, 4, 985, 2, 3, 8, 1, 44, 651, 3, 1, 1, 3, 16, 188, 9, 1, 15, 3, 43, 699, 8, 2, 13, 6, 6, 287, 3, 4, 6, 0, 48, 46, 8, 3, 9, 3, 4, 434, 9, 0, 14, 3, 49, 927, 9, 3, 1, 3, 53, 947, 10, 3, 15, 6, 28, 381, 9, 4, 12, 5, 61, 130, 3, 0, 13, 2, 23, 759, 6, 1, 3, 6, 8, 986, 7, 4, 16, 5, 45, 193, 6, 2, 1, 3, 39, 606, 9, 3, 8, 5, 2, 922, 7, 1, 4, 5, 19, 337, 5, 1, 6, 3, 20, 218, 6, 1, 13, 4, 54, 302, 5, 2, 13, 5, 39, 496, 10, 1, 18, 4, 24, 849, 5, 4, 6, 3, 63, 874, 5, 1, 15, 3, 0, 62, 2, 3, 7, 4, 52, 110, 7, 0, 9, 3, 11, 130, 9, 0, 15, 6, 2, 271, 7, 4, 16, 3, 51, 922, 5, 4, 11]
BIG = [325053936, 1916838456, 2747509486, 968416988, 250913286, 1787972202, 2429118202, 935771238, 2055588822, 1713363605, 2326691544, 2111904882, 760177788, 2777395191, 1387137679, 1497382381, 2223320861, 2416722622, 48336567, 1597221577, 668866689, 1803523506, 996220414, 2736273238, 1759787585, 1832873336, 935631570, 2601115627, 1842171055, 891339392, 2221549010, 1732537078, 2277193544, 859635850, 2093873784, 1678925085, 873847835, 1277570911, 874741875, 166347684, 1650355380, 2864685743, 2566559152, 2162443829, 2994465400, 2018627068, 1526766591, 2286820134, 2674099779, 920949599]


def test_chacha20_published_vectors():
    r = ChaChaRng([0] * 8, rounds=20)
    assert [r.next_u32() for _ in range(4)] == [0xADE0B876, 0x903DF1A0, 0xE56A5D40, 0x28BD8653]
    key = list(struct.unpack("<8I", bytes([0, 0xFF] + [0] * 30)))
    r = ChaChaRng(key, rounds=20)
    for _ in range(32):
        r.next_u32()
    assert [r.next_u32() for _ in range(4)] == [0xFB4DD572, 0x4BC42EF1, 0xDF922636, 0x327F1394]


def test_chacha8_seed_from_u64_words():
    r = ChaChaRng.seed_from_u64(1)
    assert [r.next_u32() for _ in range(4)] == [2359561649, 1728662762, 4228812395, 345245400]
    r = ChaChaRng.seed_from_u64(900_000_001)
    assert [r.next_u32() for _ in range(4)] == [2881201272, 2538399597, 1956427600, 2957324350]


def test_next_u64_across_a_refill():
    r = ChaChaRng.seed_from_u64(7)
    for _ in range(63):
        r.next_u32()
    assert r.next_u64() == 17926089783235162354
    assert r.next_u32() == 2462388141


def test_random_range_u32_and_usize():
    r = ChaChaRng.seed_from_u64(42)
    got = []
    for k in range(200):
        n = [5, 16, 3, 64, 1000, 7][k % 6]
        got.append(r.random_range(0, n) if k % 3 == 0 else r.random_range(k % 4, n + 4))
    assert got == RANGES
    # A range of 3e9 takes the extra bias-reduction draw for ~70% of the samples.
    r = ChaChaRng.seed_from_u64(3)
    assert [r.random_range(0, 3_000_000_000) for _ in range(50)] == BIG


def test_sample_distinct_takes_both_branches():
    r = ChaChaRng.seed_from_u64(5)
    for n, d in [(5, 3), (16, 3), (64, 3), (2, 3)]:
        for _ in range(50):
            s = sample_distinct(r, n, d)
            assert len(s) == min(n, d) == len(set(s)) and all(0 <= x < n for x in s)
