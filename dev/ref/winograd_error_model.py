"""winograd_error_model.py — where Winograd F(m×m,3×3)'s float32 error comes
from (BENCHMARKS.md, session 6).  Not a fixture writer: it prints, for
F(2×2,3×3) and for F(4×4,3×3) with two choices of interpolation points, the
max abs error of a 128-channel 16×16 convolution against float64, with
everything in float32, with the transforms in float64, and with the GEMMs in
float64 (intermediates still stored as float32).

    /usr/bin/python3 dev/ref/winograd_error_model.py
"""
from fractions import Fraction as Fr

import numpy as np


def polymul(a, b):
    out = [Fr(0)] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def cook_toom(points, m, r=3):
    """Aᵀ (m×n), G (n×r), Bᵀ (n×n) of F(m, r) from n-1 finite points and ∞."""
    n = m + r - 1
    pts = [Fr(p) for p in points]
    AT = [[p ** i for p in pts] + [Fr(int(i == m - 1))] for i in range(m)]
    G, BT = [], []
    for p in pts:
        poly, N = [Fr(1)], Fr(1)
        for q in pts:
            if q != p:
                poly, N = polymul(poly, [-q, Fr(1)]), N * (p - q)
        G.append([p ** j / N for j in range(r)])
        BT.append(poly + [Fr(0)] * (n - len(poly)))
    poly = [Fr(1)]
    for q in pts:
        poly = polymul(poly, [-q, Fr(1)])
    G.append([Fr(int(j == r - 1)) for j in range(r)])
    BT.append(poly[:n])
    return [np.array([[float(v) for v in row] for row in M]) for M in (AT, G, BT)]


def winograd(x, w, mats, m, tdt, gdt):
    AT, G, BT = (M.astype(tdt) for M in mats)
    n, (Co, Ci), H = m + 2, w.shape[:2], x.shape[1] - 2
    T = H // m
    U = np.einsum('ai,ocij,bj->aboc', G, w.astype(tdt), G).astype(np.float32)
    tiles = np.stack([x[:, a * m:a * m + n, b * m:b * m + n] for a in range(T) for b in range(T)], -1)
    V = np.einsum('ai,cijt,bj->abct', BT, tiles.astype(tdt), BT).astype(np.float32)
    M = np.matmul(U.astype(gdt), V.astype(gdt)).astype(np.float32)
    Y = np.einsum('ai,ijot,bj->otab', AT, M.astype(tdt), AT).astype(np.float32)
    out = np.zeros((Co, H, H), np.float32)
    for t in range(T * T):
        a, b = divmod(t, T)
        out[:, a * m:a * m + m, b * m:b * m + m] = Y[:, t]
    return out


def direct(x, w):
    x, w = x.astype(np.float64), w.astype(np.float64)
    H = x.shape[1] - 2
    return sum(np.einsum('oc,chw->ohw', w[:, :, i, j], x[:, i:i + H, j:j + H]) for i in range(3) for j in range(3))


rng = np.random.default_rng(0)
C, H = 128, 16
xs = rng.standard_normal((4, C, H + 2, H + 2)).astype(np.float32)
w = (rng.standard_normal((C, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
refs = [direct(x, w) for x in xs]
for label, pts, m in [("F(2x2,3x3) 0,1,-1", [0, 1, -1], 2),
                      ("F(4x4,3x3) 0,-1,1,1/2,-2", [0, -1, 1, Fr(1, 2), -2], 4),
                      ("F(4x4,3x3) 0,1,-1,2,-2", [0, 1, -1, 2, -2], 4)]:
    mats = cook_toom(pts, m)
    for how, tdt, gdt in [("all float32", np.float32, np.float32), ("transforms f64", np.float64, np.float32),
                          ("GEMMs f64", np.float32, np.float64)]:
        err = max(np.abs(winograd(x, w, mats, m, tdt, gdt) - r).max() for x, r in zip(xs, refs))
        print(f"{label:28s} {how:16s} max abs error {err:.2e}")
