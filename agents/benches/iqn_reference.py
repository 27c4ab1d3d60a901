"""PyTorch reference of Malcolm-Strict's learner update, for `cargo bench -p malcolm-agents`.

The identical network (flat parameters viewed as layers: fc_shared, fc_cand, fc2, fc_tau,
hidden head after the Hadamard product, out), the identical target (CVaR-greedy next action
over the stored next candidates by the target network at K midpoint taus, N' target taus),
the identical quantile Huber loss (one tau set per minibatch, sum over N, mean over N' and
batch) and Adam with a global gradient-norm clip. Minibatches are drawn from a replay of
random transitions held as tensors.

Protocol (driven by the Rust bench so both sides run one after the other in one run): the
first line of stdin is a JSON config; then every line "go" runs `updates` timed updates and
prints one line "updates_per_s <x>"; end of stdin exits.
"""
import json
import math
import sys
import time

import torch


def main():
    cfg = json.loads(sys.stdin.readline())
    # The same allocator settings as the Rust learner (malcolm_agents::tune_allocator).
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD
    except OSError:
        pass
    torch.set_num_threads(1)
    torch.manual_seed(0)
    S, C, H, H2, E = cfg["shared"], cfg["cand"], cfg["hidden"], cfg["head_hidden"], cfg["cos_embed"]
    B, N, N2, K = cfg["batch"], cfg["n_tau"], cfg["n_tau_target"], cfg["k_tau"]
    M, alpha, kappa, lr, clip = cfg["next"], cfg["alpha"], cfg["kappa"], cfg["lr"], cfg["clip"]
    gamma = cfg["discount"]
    shapes = [
        ("fc_shared.weight", (H, S)), ("fc_shared.bias", (H,)), ("fc_cand.weight", (H, C)),
        ("fc2.weight", (H, H)), ("fc2.bias", (H,)), ("fc_tau.weight", (H, E)),
        ("fc_tau.bias", (H,)), ("out.weight", (1, H2 if H2 else H)), ("out.bias", (1,)),
    ]
    if H2:
        shapes += [("head.weight", (H2, H)), ("head.bias", (H2,))]
    total = sum(math.prod(s) for _, s in shapes)
    online = torch.nn.Parameter((torch.rand(total) - 0.5) * 0.2)
    target = online.detach().clone()

    def views(flat):
        out, off = {}, 0
        for name, shape in shapes:
            n = math.prod(shape)
            out[name] = flat[off:off + n].view(shape)
            off += n
        return out

    i_range = torch.arange(1, E + 1, dtype=torch.float32)

    def psi(w, shared, cand):
        s = torch.nn.functional.linear(shared, w["fc_shared.weight"], w["fc_shared.bias"]).unsqueeze(1)
        c = torch.nn.functional.linear(cand, w["fc_cand.weight"])
        z = torch.relu(c + s)
        return torch.relu(torch.nn.functional.linear(z, w["fc2.weight"], w["fc2.bias"]))

    def phi(w, taus):
        emb = torch.cos(taus.unsqueeze(-1) * i_range * math.pi)
        return torch.relu(torch.nn.functional.linear(emb, w["fc_tau.weight"], w["fc_tau.bias"]))

    def quantiles(w, p, f):
        # head(psi * phi_k) = (W_head diag(phi_k)) psi: one product for all K taus.
        k = f.shape[0]
        if not H2:
            return p.matmul((f * w["out.weight"]).t()) + w["out.bias"]
        a = w["head.weight"].unsqueeze(0) * f.unsqueeze(1)
        y = p.matmul(a.reshape(k * H2, H).t()).view(p.shape[0], p.shape[1], k, H2)
        y = torch.relu(y + w["head.bias"])
        return torch.nn.functional.linear(y, w["out.weight"], w["out.bias"]).squeeze(-1)

    R = 4096
    rep = {
        "shared": torch.rand(R, S) * 2 - 1, "chosen": torch.rand(R, 1, C) * 2 - 1,
        "reward": torch.rand(R) - 0.99, "next_shared": torch.rand(R, S) * 2 - 1,
        "next_cand": torch.rand(R, M, C) * 2 - 1, "mask": torch.ones(R, M, dtype=torch.bool),
    }
    select = torch.tensor([alpha * (k + 0.5) / K for k in range(K)])
    # The layers as views of the flat tensors, made once (as the Rust learner keeps them).
    w_online = views(online)
    w_target = views(target)
    m_state = torch.zeros(total)
    v_state = torch.zeros(total)
    step = [0]

    def update():
        idx = torch.randint(0, R, (B,))
        b = {k: v.index_select(0, idx) for k, v in rep.items()}
        taus = torch.rand(N)
        taus2 = torch.rand(N2)
        with torch.no_grad():
            if gamma == 0.0:
                # A contextual bandit (the shipped discount): the target is the reward itself.
                tgt = b["reward"].unsqueeze(1)
            else:
                wt = w_target
                pn = psi(wt, b["next_shared"], b["next_cand"])
                sel = quantiles(wt, pn, phi(wt, select)).mean(-1)
                a = sel.masked_fill(~b["mask"], float("-inf")).argmax(1)
                a = a.view(B, 1, 1).expand(B, 1, H)
                q_next = quantiles(wt, pn.gather(1, a), phi(wt, taus2)).squeeze(1)
                tgt = b["reward"].unsqueeze(1) + gamma * q_next
        w = w_online
        pred = quantiles(w, psi(w, b["shared"], b["chosen"]), phi(w, taus)).squeeze(1)
        with torch.no_grad():
            # The quantile Huber loss's gradient by hand (as the Rust learner does).
            u = tgt.unsqueeze(2) - pred.unsqueeze(1)
            c = u.clamp(-kappa, kappa)
            s1, s2 = c.sum(1), c.clamp_max(0).sum(1)
            gp = (taus * s1 + (1 - 2 * taus) * s2) * (-1.0 / (B * tgt.shape[1]) / kappa)
        (g,) = torch.autograd.grad((pred * gp).sum(), [online])
        with torch.no_grad():
            norm = g.square().sum().sqrt().item()
            if norm > clip:
                g = g * (clip / norm)
            step[0] += 1
            bc1, bc2 = 1 - 0.9 ** step[0], 1 - 0.999 ** step[0]
            m_state.mul_(0.9).add_(g, alpha=0.1)
            v_state.mul_(0.999).addcmul_(g, g, value=0.001)
            online.sub_((m_state / bc1) / ((v_state / bc2).sqrt() + 1e-8) * lr)

    for _ in range(5):
        update()
    for line in sys.stdin:
        if line.strip() != "go":
            continue
        t = time.perf_counter()
        for _ in range(cfg["updates"]):
            update()
        dt = time.perf_counter() - t
        print(f"updates_per_s {cfg['updates'] / dt:.2f}", flush=True)


if __name__ == "__main__":
    main()
