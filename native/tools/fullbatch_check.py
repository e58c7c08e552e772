#!/usr/bin/python3
"""Checks fullbatch_check (the C++ full-batch measures on float32 Grams) against
float64 references computed from the features with numpy and scipy.

    /usr/bin/python3 native/tools/fullbatch_check.py [--tool build-core/fullbatch_check] [--only demo]

Cases (--only a,b): demo (Kornblith et al.'s data, their published values to
1e-5), low (d < N: every measure meaningful; and ridge CCA), high (d > N:
cca_rho and cca_r2 null "rank_deficient"; each measure alone equals all
together), large (N = 400, d up to 1200), sigma (a user σ), shared (one model
with itself: symmetric, diagonal 1, equal to the separate run), invariance,
edge (a constant layer, a zero sample, bad arguments, cancel: ABORT_ERR),
memory (peak RSS growth within full_batch_measure_bytes). Prints the largest
relative difference per measure and exits 1 on a failure.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import scipy.spatial.distance
import scipy.stats

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'fixtures', 'generate'))
from reference_hsic import hsic1  # noqa: E402

ALL = [
    "cka", "linear_cka_biased", "rbf_cka", "rbf_cka_biased", "dcor", "cca_rho", "cca_r2", "svcca",
    "procrustes", "rsa", "mknn",
]

# ---- Kornblith et al.'s demo code (Colab "CKA"), as published ----

def gram_linear(x):
    return x.dot(x.T)


def gram_rbf(x, threshold=1.0):
    dot_products = x.dot(x.T)
    sq_norms = np.diag(dot_products)
    sq_distances = -2 * dot_products + sq_norms[:, None] + sq_norms[None, :]
    sq_median_distance = np.median(sq_distances)
    return np.exp(-sq_distances / (2 * threshold ** 2 * sq_median_distance))


def center_gram(gram, unbiased=False):
    gram = gram.copy()
    if unbiased:
        n = gram.shape[0]
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0, dtype=np.float64) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0, dtype=np.float64)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def cka(gram_x, gram_y, debiased=False):
    gram_x = center_gram(gram_x, unbiased=debiased)
    gram_y = center_gram(gram_y, unbiased=debiased)
    scaled_hsic = gram_x.ravel().dot(gram_y.ravel())
    return scaled_hsic / (np.linalg.norm(gram_x) * np.linalg.norm(gram_y))


# ---- independent references from the features ----

def ratio(k, l):
    return hsic1(k, l) / np.sqrt(hsic1(k, k) * hsic1(l, l))


def sq_dist(x):
    return scipy.spatial.distance.squareform(scipy.spatial.distance.pdist(x, "sqeuclidean"))


def rbf_kernel(x, threshold, sigma=None):
    d2 = sq_dist(x)
    if sigma is None:
        sigma = threshold * np.sqrt(np.median(d2))
    return np.exp(-d2 / (2 * sigma ** 2)), sigma


def basis(x, tol_eps=2.0 ** -23):
    """Orthonormal basis of the column space of the centred x (SVD, numpy's matrix_rank rule)."""
    xc = x - x.mean(0)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    n = x.shape[0]
    keep = s ** 2 > n * tol_eps * s[0] ** 2
    return u[:, keep], s[keep]


def cca_values(x, y, ridge=0.0):
    """Canonical correlations: QR of the centred features (ridge: the ridge-CCA weights on the SVD basis)."""
    n = x.shape[0]
    if ridge == 0:
        qx, _ = np.linalg.qr(x - x.mean(0))
        qy, _ = np.linalg.qr(y - y.mean(0))
        rx = min(np.linalg.matrix_rank(x - x.mean(0)), n)
        ry = min(np.linalg.matrix_rank(y - y.mean(0)), n)
        # QR of a rank-deficient matrix is not a basis: use the SVD one then.
        if rx < x.shape[1]:
            qx, _ = basis(x)
        if ry < y.shape[1]:
            qy, _ = basis(y)
        rho = np.linalg.svd(qx.T @ qy, compute_uv=False)
        return np.clip(rho, 0, 1), min(qx.shape[1], qy.shape[1])
    ux, sx = basis(x)
    uy, sy = basis(y)
    lx, ly = sx ** 2, sy ** 2
    wx = np.sqrt(lx / (lx + ridge * lx[0]))
    wy = np.sqrt(ly / (ly + ridge * ly[0]))
    rho = np.linalg.svd((ux * wx).T @ (uy * wy), compute_uv=False)
    return np.clip(rho, 0, 1), min(ux.shape[1], uy.shape[1])


def svcca(x, y, variance, ridge=0.0):
    out = []
    for z in (x, y):
        u, s = basis(z)
        lam = s ** 2
        cum = np.cumsum(lam)
        k = int(np.argmax(cum >= variance * cum[-1])) + 1
        w = np.sqrt(lam[:k] / (lam[:k] + ridge * lam[0])) if ridge > 0 else np.ones(k)
        out.append((u[:, :k] * w, k))
    (ux, kx), (uy, ky) = out
    rho = np.clip(np.linalg.svd(ux.T @ uy, compute_uv=False), 0, 1)
    return rho.sum() / min(kx, ky), kx, ky


def procrustes(x, y):
    xc = x - x.mean(0)
    yc = y - y.mean(0)
    xc /= np.linalg.norm(xc)
    yc /= np.linalg.norm(yc)
    return np.linalg.svd(xc.T @ yc, compute_uv=False).sum()


def rsa(x, y):
    return scipy.stats.spearmanr(scipy.spatial.distance.pdist(x), scipy.spatial.distance.pdist(y)).correlation


def knn(x, k):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = xn @ xn.T
    np.fill_diagonal(c, -np.inf)
    return np.argsort(-c, axis=1, kind="stable")[:, :k]


def mknn(x, y, k):
    a, b = knn(x, k), knn(y, k)
    return np.mean([len(set(a[i]) & set(b[i])) / k for i in range(x.shape[0])])


def reference(x, y, opts):
    n = x.shape[0]
    thr = opts["threshold"]
    ridge = opts["ridge"]
    out = {}
    out["cka"] = ratio(gram_linear(x - x.mean(0)), gram_linear(y - y.mean(0)))
    out["linear_cka_biased"] = cka(gram_linear(x), gram_linear(y))
    kx, _ = rbf_kernel(x, thr)
    ky, _ = rbf_kernel(y, thr)
    out["rbf_cka"] = ratio(kx, ky)
    out["rbf_cka_biased"] = cka(gram_rbf(x, thr), gram_rbf(y, thr))
    out["dcor"] = ratio(np.sqrt(sq_dist(x)), np.sqrt(sq_dist(y)))
    fills = lambda z: z.shape[1] >= n - 1 or np.linalg.matrix_rank(z - z.mean(0)) >= n - 1
    if ridge == 0 and (fills(x) or fills(y)):
        out["cca_rho"] = out["cca_r2"] = None
    else:
        rho, count = cca_values(x, y, ridge)
        out["cca_rho"] = rho.sum() / count
        out["cca_r2"] = (rho ** 2).sum() / count
    sv, kx_, ky_ = svcca(x, y, opts["variance"], ridge)
    out["svcca"] = None if ridge == 0 and (kx_ >= n - 1 or ky_ >= n - 1) else sv
    out["procrustes"] = procrustes(x, y)
    out["rsa"] = rsa(x, y)
    out["mknn"] = mknn(x, y, opts["k"])
    return out


# ---- running the tool ----

def run_tool(tool, xs, ys, opts, shared=False, measures=ALL):
    n = xs[0].shape[0]
    with tempfile.TemporaryDirectory() as tmp:
        def specs(zs, tag):
            out = []
            for i, z in enumerate(zs):
                path = os.path.join(tmp, f"{tag}{i}.f64")
                np.ascontiguousarray(z, dtype="<f8").tofile(path)
                out.append(f"{path}:{z.shape[1]}")
            return ",".join(out)
        cmd = [tool, "measures", "--n", str(n), "--x", specs(xs, "x"), "--measures", ",".join(measures),
               "--threshold", str(opts["threshold"]), "--svcca-variance", str(opts["variance"]),
               "--mknn-k", str(opts["k"]), "--cca-ridge", str(opts["ridge"]), "--chunk", str(opts.get("chunk", 16)),
               "--threads", "1"]
        cmd += ["--shared", "1"] if shared else ["--y", specs(ys, "y")]
        if "sigma" in opts:
            cmd += ["--sigma", repr(opts["sigma"])]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr}")
        return json.loads(res.stdout)


class Checker:
    def __init__(self):
        self.failures = 0
        self.worst = {}

    def close(self, case, measure, got, want, tol):
        """Relative difference; absolute (scaled by SMALL) for values below SMALL in size."""
        if want is None or got is None:
            ok = want is None and got is None
            diff = 0.0
        else:
            diff = abs(got - want) / max(abs(want), SMALL)
            ok = diff <= tol
        self.worst[measure] = max(self.worst.get(measure, (0.0, "")), (diff, case))
        if not ok:
            self.failures += 1
            print(f"FAIL {case} {measure}: got {got}, want {want} (diff {diff:.3g} > {tol})")

    def expect(self, ok, what):
        if not ok:
            self.failures += 1
            print(f"FAIL {what}")


# Values smaller than this are compared absolutely (to tol x SMALL): an
# unbiased HSIC near 0 is a difference of large terms, each carrying the
# float32 rounding of the Grams (about 1e-8 absolute).
SMALL = 0.1

# rsa ranks N(N-1)/2 distances made from float32 Grams: near-tied distances
# can swap ranks, which moves the Spearman correlation by ~1e-6.
TOLERANCE = {"rsa": 1e-4}


def compare_case(chk, tool, case, xs, ys, opts):
    got = run_tool(tool, xs, ys, opts)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            want = reference(x, y, opts)
            for measure in ALL:
                g = got["measures"][measure]["values"][i][j]
                chk.close(case, measure, g, want[measure], TOLERANCE.get(measure, 1e-6))
                reason = got["measures"][measure]["reasons"][i][j]
                chk.expect((g is None) == (reason is not None), f"{case} {measure} [{i}][{j}]: a value and a reason")
    return got


def main():
    parser = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--tool", default=os.path.join(here, "..", "..", "build-core", "fullbatch_check"))
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    tool = args.tool
    chk = Checker()
    base = {"threshold": 0.5, "variance": 0.99, "k": 10, "ridge": 0.0}
    only = set(args.only.split(",")) if args.only else None
    want = lambda name: only is None or name in only

    if want("demo"):
        np.random.seed(1337)
        x = np.random.randn(100, 10)
        y = np.random.randn(100, 10) + x
        got = compare_case(chk, tool, "demo", [x], [y], base)
        published = {"cka": 0.51346, "linear_cka_biased": 0.55761, "rbf_cka_biased": 0.65483}
        for measure, value in published.items():
            chk.close("demo published", measure, got["measures"][measure]["values"][0][0], value, 1e-5 / value)
        print("demo values:", json.dumps({m: got["measures"][m]["values"][0][0] for m in ALL}))

    if want("low"):
        rng = np.random.default_rng(101)
        # d < N: two related low-dimensional layers per side, far from the origin.
        n = 120
        z = rng.standard_normal((n, 6))
        xs = [z @ rng.standard_normal((6, 8)) + 0.3 * rng.standard_normal((n, 8)) + 50.0,
              np.tanh(z @ rng.standard_normal((6, 20))) + 0.1 * rng.standard_normal((n, 20))]
        ys = [z @ rng.standard_normal((6, 5)) + rng.standard_normal((n, 5)),
              rng.standard_normal((n, 12)), (z ** 2) @ rng.standard_normal((6, 30))]
        got = compare_case(chk, tool, "low", xs, ys, base)
        chk.expect(not any(got["fills1"]) and not any(got["fills2"]), "low: no layer fills")
        chk.expect(got["rank1"] == [8, 20] and got["rank2"] == [5, 12, 6], f"low: ranks {got['rank1']} {got['rank2']}")
        ridge = dict(base, ridge=0.05)
        compare_case(chk, tool, "low ridge", xs, ys, ridge)

    if want("high"):
        rng = np.random.default_rng(102)
        # d > N: conv-like layers; cca_rho/cca_r2 null without a ridge.
        n = 60
        z = rng.standard_normal((n, 10))
        xs = [np.maximum(z @ rng.standard_normal((10, 200)), 0) + 0.05 * rng.standard_normal((n, 200))]
        ys = [z @ rng.standard_normal((10, 300)) + rng.standard_normal((n, 300)), rng.standard_normal((n, 7))]
        got = compare_case(chk, tool, "high", xs, ys, base)
        chk.expect(got["fills1"] == [True] and got["fills2"] == [True, False], f"high: fills {got['fills1']} {got['fills2']}")
        for measure in ("cca_rho", "cca_r2"):
            chk.expect(got["measures"][measure]["reasons"][0] == ["rank_deficient", "rank_deficient"],
                       f"high: {measure} reasons {got['measures'][measure]['reasons']}")
        compare_case(chk, tool, "high ridge", xs, ys, dict(base, ridge=0.1))
        # Each measure alone takes its own path through the pair loop (svcca
        # alone multiplies only the kept corners): the same values as all together.
        for opts in (base, dict(base, ridge=0.1)):
            together = run_tool(tool, xs, ys, opts)
            for measure in ALL:
                alone = run_tool(tool, xs, ys, opts, measures=[measure])["measures"][measure]
                both = together["measures"][measure]
                # svcca alone multiplies the corners directly: another GEMM shape, other rounding.
                chk.expect(alone["reasons"] == both["reasons"], f"high: {measure} alone, other reasons")
                for va, vb in zip(sum(alone["values"], []), sum(both["values"], [])):
                    chk.expect((va is None) == (vb is None) and (va is None or abs(va - vb) <= 1e-12),
                               f"high: {measure} alone {va} vs together {vb}")

    if want("large"):
        rng = np.random.default_rng(103)
        # Conv-like layers at a larger N (d >> N, ranks N - 1): Procrustes and
        # ridge CCA sum hundreds of singular values; low-rank ones next to them.
        n = 400
        z = rng.standard_normal((n, 30))
        xs = [np.maximum(z @ rng.standard_normal((30, 1200)), 0) + 0.2 * rng.standard_normal((n, 1200)),
              z @ rng.standard_normal((30, 40)) + 0.5 * rng.standard_normal((n, 40))]
        ys = [np.tanh(z @ rng.standard_normal((30, 900))) + 0.3 * rng.standard_normal((n, 900)), z[:, :20] + 1.0]
        compare_case(chk, tool, "large", xs, ys, base)
        compare_case(chk, tool, "large ridge", xs, ys, dict(base, ridge=0.01))

    if want("sigma"):
        rng = np.random.default_rng(104)
        # A user σ (FullGram::sigma) replaces the median rule for both rbf measures.
        n = 70
        x = rng.standard_normal((n, 6))
        y = np.tanh(x @ rng.standard_normal((6, 9))) + 0.2 * rng.standard_normal((n, 9))
        sigma = 1.7
        got = run_tool(tool, [x], [y], dict(base, sigma=sigma), measures=["rbf_cka", "rbf_cka_biased"])
        kx, _ = rbf_kernel(x, 0, sigma)
        ky, _ = rbf_kernel(y, 0, sigma)
        chk.close("sigma", "rbf_cka", got["measures"]["rbf_cka"]["values"][0][0], ratio(kx, ky), 1e-6)
        chk.close("sigma", "rbf_cka_biased", got["measures"]["rbf_cka_biased"]["values"][0][0], cka(kx, ky), 1e-6)
        chk.expect(got["sigma1"] == [sigma] and got["sigma2"] == [sigma], f"sigma: {got['sigma1']} {got['sigma2']}")

    if want("shared"):
        rng = np.random.default_rng(105)
        # One model with itself: symmetric, diagonal exactly 1.
        n = 80
        z = rng.standard_normal((n, 5))
        xs = [z @ rng.standard_normal((5, 9)) + 3.0, np.sin(z @ rng.standard_normal((5, 40))), rng.standard_normal((n, 4))]
        got = run_tool(tool, xs, None, base, shared=True)
        sep = run_tool(tool, xs, xs, base)
        for measure in ALL:
            v = np.array(got["measures"][measure]["values"], dtype=float)
            chk.expect(np.all(np.diag(v) == 1.0), f"shared {measure}: diagonal {np.diag(v)}")
            chk.expect(np.array_equal(v, v.T), f"shared {measure}: not symmetric")
            w = np.array(sep["measures"][measure]["values"], dtype=float)
            chk.close("shared vs separate", measure, float(np.max(np.abs(v - w))), 0.0, 1e-6)
        chk.expect(got["done"] == got["total"], f"shared: progress {got['done']} / {got['total']}")
        for i, x in enumerate(xs):
            for j, y in enumerate(xs):
                want_v = reference(x, y, base)
                for measure in ALL:
                    chk.close("shared", measure, got["measures"][measure]["values"][i][j], want_v[measure], TOLERANCE.get(measure, 1e-6))

    if want("invariance"):
        rng = np.random.default_rng(106)
        n = 90
        # A condition number of 10 for the map: the small eigen-directions of a
        # float32 Gram carry rounding of about ε·κ², so CCA's invariance to
        # invertible maps holds to 1e-6 only for well-conditioned ones.
        x = rng.standard_normal((n, 12))
        q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
        q2, _ = np.linalg.qr(rng.standard_normal((12, 12)))
        a = q @ np.diag(np.geomspace(0.3, 3.0, 12)) @ q2
        ys = [x @ a, x @ q * 3.0 + 7.0, x * 2.5]
        got = run_tool(tool, [x], ys, base)
        v = {m: got["measures"][m]["values"][0] for m in ALL}
        for m in ("cca_rho", "cca_r2"):
            chk.close("invariance invertible", m, v[m][0], 1.0, 1e-6)
        for m in ("procrustes", "rsa", "cka", "linear_cka_biased", "cca_rho", "svcca", "rbf_cka", "rbf_cka_biased", "dcor"):
            chk.close("invariance rotation+scale+shift", m, v[m][1], 1.0, 1e-6)
        chk.close("invariance scaling", "mknn", v["mknn"][2], 1.0, 1e-12)

    if want("edge"):
        rng = np.random.default_rng(107)
        n = 40
        x = rng.standard_normal((n, 6))
        const = np.full((n, 5), 3.0)
        zero = rng.standard_normal((n, 4))
        zero[7] = 0.0
        got = run_tool(tool, [x, const], [x, zero], base)
        for m in ALL:
            r = got["measures"][m]["reasons"]
            chk.expect(r[1] == ["constant", "constant"], f"edge {m}: constant row reasons {r[1]}")
        chk.expect(got["measures"]["mknn"]["reasons"][0] == [None, "zero_norm"],
                   f"edge mknn reasons {got['measures']['mknn']['reasons'][0]}")
        res = subprocess.run([tool, "measures", "--n", "3", "--x", "/dev/null:1", "--y", "/dev/null:1"],
                             capture_output=True, text=True)
        chk.expect(res.returncode != 0, "edge: N < 4 refused")
        # mknnK >= N and an unknown measure: ERR_INVALID_ARG; a cancel during the measures: ABORT_ERR.
        for opts, measures, code in ((dict(base, k=n), ["mknn"], "ERR_INVALID_ARG"),
                                     (base, ["cka", "nope"], "ERR_INVALID_ARG")):
            try:
                run_tool(tool, [x], [x], opts, measures=measures)
                chk.expect(False, f"edge: {measures} with k={opts['k']} refused")
            except RuntimeError as e:
                chk.expect(code in str(e), f"edge: {code} expected, got {e}")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "x.f64")
            big = rng.standard_normal((300, 400))
            big.tofile(path)
            for after in (0, 2):
                res = subprocess.run([tool, "measures", "--n", "300", "--x", ",".join([f"{path}:400"] * 3), "--shared", "1",
                                      "--cancel-after", str(after), "--measures", "procrustes,rsa"],
                                     capture_output=True, text=True)
                chk.expect(res.returncode != 0 and "ABORT_ERR" in res.stderr, f"edge: cancel after {after}: {res.stderr}")

    if want("memory"):
        rng = np.random.default_rng(108)
        # full_batch_measure_bytes bounds what the run adds to the process's
        # resident memory (peak RSS growth, VmHWM after clear_refs).
        n = 1500
        with tempfile.TemporaryDirectory() as tmp:
            specs = []
            for i, d in enumerate((40, 2000)):
                path = os.path.join(tmp, f"m{i}.f64")
                rng.standard_normal((n, d)).tofile(path)
                specs.append(f"{path}:{d}")
            for measures in (["cka", "linear_cka_biased"], ["rbf_cka"], ["procrustes", "svcca"], ["rsa"], ["mknn"], ALL):
                for side in (["--y", ",".join(specs[::-1])], ["--shared", "1"]):
                    res = subprocess.run([tool, "measures", "--n", str(n), "--x", ",".join(specs), "--measures",
                                          ",".join(measures), "--cca-ridge", "0.1", "--threads", "1"] + side,
                                         capture_output=True, text=True)
                    got = json.loads(res.stdout)
                    print(f"memory {','.join(measures)} {side[0]}: peak growth {got['peak_rss_growth'] / 2**20:.0f} MiB,"
                          f" bound {got['measure_bytes'] / 2**20:.0f} MiB, {got['ms']:.0f} ms")
                    chk.expect(got["peak_rss_growth"] <= got["measure_bytes"], f"memory bound {measures} {side[0]}")

    for measure, (diff, case) in sorted(chk.worst.items()):
        print(f"{measure:18s} largest difference {diff:.3g} ({case})")
    print("FAILED" if chk.failures else "ok", chk.failures)
    return 1 if chk.failures else 0


if __name__ == "__main__":
    sys.exit(main())
