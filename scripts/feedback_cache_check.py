"""How much of fa's cost over backprop on the 2x800 tanh MLP is its separate B (issue 13's fa target).

A plain-torch replica of one 2x800 step at batch 64 (forward, backward by hand, SGD), timed with the
error sent down through W itself (backprop's matmuls) and through a separate copy B = W.clone()
(feedback alignment's): the arithmetic is identical, so the difference is the second 800x800 matrix
in the cache. Paired and interleaved, medians; 1 thread.

    python scripts/feedback_cache_check.py [--reps 15] [--steps 40]
"""
import argparse
import statistics
import time

import torch


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 784, generator=g)
    W1, W2, W3 = (torch.randn(o, i, generator=g) * 0.03 for o, i in ((800, 784), (800, 800), (10, 800)))
    B2, B3 = W2.clone(), W3.clone()

    def step(M2, M3):
        h1 = torch.tanh(x @ W1.T)
        h2 = torch.tanh(h1 @ W2.T)
        e = h2 @ W3.T  # the error of a zero target: the arithmetic, not the learning, is timed
        g3 = e.T @ h2
        d2 = (e @ M3) * (1 - h2 * h2)
        g2 = d2.T @ h1
        d1 = (d2 @ M2) * (1 - h1 * h1)
        g1 = d1.T @ x
        for W, grad in ((W1, g1), (W2, g2), (W3, g3)):
            W.sub_(grad, alpha=1e-6)

    times = {"W (backprop)": [], "separate B (fa)": []}
    for _ in range(30):
        step(W2, W3)
        step(B2, B3)
    for _ in range(args.reps):
        for name, (m2, m3) in (("W (backprop)", (W2, W3)), ("separate B (fa)", (B2, B3))):
            t = time.perf_counter()
            for _ in range(args.steps):
                step(m2, m3)
            times[name].append((time.perf_counter() - t) / args.steps * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:16s} {v:.3f} ms per step")
    print(f"ratio separate B / W: {med['separate B (fa)'] / med['W (backprop)']:.3f}")


if __name__ == "__main__":
    main()
