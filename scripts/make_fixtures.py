#!/usr/bin/env python3
"""Generate TorchScript model fixtures + reference CKA values for torch-cka tests.

Run with a Python that has torch (e.g. /usr/bin/python3):
    /usr/bin/python3 scripts/make_fixtures.py

Deterministic: fixed torch/numpy seeds, single thread, PYTHONHASHSEED=0 (re-exec); JSON
and .pt outputs are byte-identical across runs.

Writes into test/fixtures/:
  mlp_scripted.pt, mlp_traced.pt, convnet_traced.pt, convnet_scripted.pt, odd_scripted.pt,
  rotated_scripted.pt, dynamic_scripted.pt, two_inputs_scripted.pt, frozen_scripted.pt (mlp_scripted
  after torch.jit.freeze), transformer_scripted.pt (a tiny ViT whose TransformerEncoderLayers run
  fused in eval mode, so that their submodules never run; not in fixtures.json)
  fixtures.json   -- per-model metadata (kind, input shape, eager named_modules layers)
  reference.json  -- minibatch linear CKA (unbiased HSIC, Nguyen et al. 2021 eq. 3),
                     float64, computed with forward hooks on the eager modules.

    /usr/bin/python3 scripts/make_fixtures.py --only transformer
writes transformer_scripted.pt alone and leaves every other file as it is (reference.json's
float64 values can differ in the last digits from one machine's BLAS to another's).
"""
import json
import math
import os
import sys

# TorchScript serializes module __constants__ (a Python set) in iteration order, which
# depends on string hash randomization; pin it so the .pt files are byte-identical too.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
from collections import OrderedDict
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn as nn

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "test", "fixtures")
BATCH_SIZES = [8, 5, 12]


# --------------------------------------------------------------------------- models
class MLP(nn.Module):
    def __init__(self, d_in=12, h1=32, h2=24, h3=16, d_out=8):
        super().__init__()
        self.fc1 = nn.Linear(d_in, h1)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(h1, h2)
        self.act2 = nn.Tanh()
        self.head = nn.Sequential(nn.Linear(h2, h3), nn.GELU())
        self.out = nn.Linear(h3, d_out)

    def forward(self, x):
        x = self.act1(self.fc1(x))
        x = self.act2(self.fc2(x))
        x = self.head(x)
        return self.out(x)


class Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn(self.conv(x))


class ConvNet(nn.Module):
    def __init__(self, c=8, n_classes=5):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.block1 = Block(c)
        self.block2 = Block(c)
        self.block3 = Block(c)
        self.relu = nn.ReLU()  # one module object, called 3 times
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x):
        x = self.relu(self.stem(x))
        x = self.relu(self.block1(x))
        x = self.relu(self.block2(x))
        x = self.block3(x)
        x = self.flat(self.pool(x))
        return self.fc(x)


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x) -> Tuple[torch.Tensor, torch.Tensor]:
        y = self.lin(x)
        return y, y * 2


class Listy(nn.Module):
    def forward(self, x) -> List[torch.Tensor]:
        return [x + 1, x - 1]


class Count(nn.Module):
    def forward(self, x) -> int:
        return x.size(0)


class Const(nn.Module):
    def forward(self, x):
        return torch.ones(x.size(0), 4) * 3.0


class Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.pair = Pair()
        self.listy = Listy()
        self.count = Count()
        self.const = Const()
        self.unused = nn.Linear(6, 6)
        self.items = nn.ModuleList([nn.Linear(6, 6), nn.Linear(6, 6)])
        self.final = nn.Linear(6, 3)

    def forward(self, x):
        h = self.pair(x)[0]
        parts = self.listy(h)
        h = parts[0] * 0.5 + parts[1] * 0.25
        for m in self.items:
            h = torch.relu(m(h))
        y = self.final(h)
        n = self.count(x)
        c = self.const(x)
        return y + n * 0 + c[:, :3] * 0.01


class Shift(nn.Module):
    def forward(self, x):
        return x + 100.0


class Scale(nn.Module):
    def forward(self, x):
        return x * -3.0


class Rotated(nn.Module):
    """lin, then an orthogonal map times 2.5, a shift by +100 and a scale by -3:
    every layer's CKA with every other is exactly 1."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(12, 16)
        self.rot = nn.Linear(16, 16, bias=False)
        q, _ = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64))
        with torch.no_grad():
            self.rot.weight.copy_((2.5 * q).float())
        self.shift = Shift()
        self.scale = Scale()

    def forward(self, x):
        return self.scale(self.shift(self.rot(self.lin(x))))


class Flip(nn.Module):
    def forward(self, x):
        return x.t()


class Dynamic(nn.Module):
    """`again` runs once for an even batch size and twice for an odd one;
    `flip` returns its input transposed (batch last)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.again = nn.Tanh()
        self.flip = Flip()
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        h = self.lin(x)
        for _ in range(x.size(0) % 2 + 1):
            h = self.again(h)
        f = self.flip(h)
        return self.out(h) + f.sum() * 0.0


class SumDiff(nn.Module):
    def forward(self, a, b) -> Dict[str, torch.Tensor]:
        return {"sum": a + b, "diff": a - b}


class TwoInputs(nn.Module):
    """forward(tokens: int64 (n, 5), x: float32 (n, 4)); `sumdiff` returns a dict."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.proj = nn.Linear(4, 8)
        self.sumdiff = SumDiff()
        self.mix = nn.Linear(16, 3)

    def forward(self, tokens, x):
        e = self.embed(tokens).mean(1)
        p = self.proj(x)
        d = self.sumdiff(e, p)
        return self.mix(torch.cat([d["sum"], d["diff"]], 1))


class Square(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(10, 10)

    def forward(self, x):
        y = self.inner(x)
        y.mul_(y)  # in place, after inner's output was tapped
        return y


class InPlace(nn.Module):
    """Outputs that share one tensor object: ReLU(inplace=True) changes lin's
    output after it was tapped; seq returns its last child's output unchanged;
    square returns its child's output after squaring it in place."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 10)
        self.act = nn.ReLU(inplace=True)
        self.seq = nn.Sequential(nn.Linear(10, 10), nn.Tanh())
        self.square = Square()
        self.out = nn.Linear(10, 3)

    def forward(self, x):
        x = self.act(self.lin(x))
        x = self.seq(x)
        x = self.square(x)
        return self.out(x)


class TinyViT(nn.Module):
    """Patches of a 3x8x8 image (4 tokens of width 16), a 2-layer nn.TransformerEncoder
    (batch_first, 2 heads), a LayerNorm and a linear head. In eval mode without autograd a
    TransformerEncoderLayer runs its fused fast path (aten::_transformer_encoder_layer_fwd),
    so none of its 9 submodules (self_attn, self_attn.out_proj, linear1, dropout, linear2,
    norm1, norm2, dropout1, dropout2) runs: 18 left out with default layers."""

    def __init__(self, d=16, heads=2, depth=2, n_classes=5):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.pos = nn.Parameter(torch.randn(1, 4, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_classes)

    def forward(self, x):
        h = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        h = self.encoder(h)
        return self.head(self.norm(h).mean(1))


TRANSFORMER_FILE = "transformer_scripted.pt"


def save_transformer():
    """transformer_scripted.pt, on its own: in neither fixtures.json nor reference.json."""
    import warnings

    torch.manual_seed(14)
    model = TinyViT().eval()
    with warnings.catch_warnings():
        # TorchScript's note on TransformerEncoderLayer's unused 'batch_first' constant.
        warnings.simplefilter("ignore", UserWarning)
        sm = torch.jit.script(model)
    path = os.path.join(OUT_DIR, TRANSFORMER_FILE)
    sm.save(path)

    # The fused path: in eval mode under no_grad the layers' submodules do not run.
    ran = set()
    handles = [m.register_forward_hook(lambda mod, inp, out, n=n: ran.add(n))
               for n, m in model.named_modules() if n]
    g = torch.Generator().manual_seed(300)
    loaded = torch.jit.load(path)
    loaded.eval()
    for n in (1, 5, 9):
        x = torch.randn(n, 3, 8, 8, generator=g)
        with torch.no_grad():
            a = model(x)
            b = loaded(x)
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (TRANSFORMER_FILE, (a - b).abs().max())
    for h in handles:
        h.remove()
    fused = [n for n, _ in model.named_modules() if n.startswith("encoder.layers.") and n.count(".") >= 3]
    assert len(fused) == 18 and not any(n in ran for n in fused), sorted(ran)
    print(f"[verify] {TRANSFORMER_FILE}: loaded output matches eager (n=1,5,9); "
          f"{len(fused)} submodules fused away; {os.path.getsize(path)} bytes")


def build_models():
    models = OrderedDict()

    torch.manual_seed(1)
    models["mlp_scripted.pt"] = MLP(12, 32, 24, 16, 8).eval()

    torch.manual_seed(2)
    models["mlp_traced.pt"] = MLP(12, 40, 20, 16, 8).eval()

    def make_convnet(seed):
        torch.manual_seed(seed)
        net = ConvNet()
        # non-trivial BN running stats: a few train-mode forwards on random data
        net.train()
        with torch.no_grad():
            for _ in range(5):
                net(torch.randn(16, 3, 8, 8) * 1.5 + 0.3)
        return net.eval()

    models["convnet_traced.pt"] = make_convnet(3)
    models["convnet_scripted.pt"] = make_convnet(4)

    torch.manual_seed(5)
    models["odd_scripted.pt"] = Odd().eval()

    torch.manual_seed(6)
    models["rotated_scripted.pt"] = Rotated().eval()

    torch.manual_seed(7)
    models["dynamic_scripted.pt"] = Dynamic().eval()

    torch.manual_seed(8)
    models["two_inputs_scripted.pt"] = TwoInputs().eval()

    torch.manual_seed(9)
    models["inplace_scripted.pt"] = InPlace().eval()
    return models


META = OrderedDict([
    ("mlp_scripted.pt", ("scripted", [None, 12])),
    ("mlp_traced.pt", ("traced", [None, 12])),
    ("convnet_traced.pt", ("traced", [None, 3, 8, 8])),
    ("convnet_scripted.pt", ("scripted", [None, 3, 8, 8])),
    ("odd_scripted.pt", ("scripted", [None, 6])),
    ("rotated_scripted.pt", ("scripted", [None, 12])),
    ("dynamic_scripted.pt", ("scripted", [None, 6])),
    ("two_inputs_scripted.pt", ("scripted", [[None, 5], [None, 4]])),
    ("inplace_scripted.pt", ("scripted", [None, 6])),
])
TRACE_EXAMPLE = {"mlp_traced.pt": (6, 12), "convnet_traced.pt": (4, 3, 8, 8)}


# --------------------------------------------------------------------------- save / verify
def save_models(models):
    for fname, model in models.items():
        kind, _ = META[fname]
        with torch.no_grad():
            if kind == "scripted":
                sm = torch.jit.script(model)
            else:
                g = torch.Generator().manual_seed(100)
                ex = torch.randn(*TRACE_EXAMPLE[fname], generator=g)
                sm = torch.jit.trace(model, ex)
        sm.save(os.path.join(OUT_DIR, fname))
        if fname == "mlp_scripted.pt":
            # Freezing inlines every submodule call: a model torch-cka cannot tap.
            torch.jit.freeze(sm.eval()).save(os.path.join(OUT_DIR, "frozen_scripted.pt"))


def verify_models(models):
    g = torch.Generator().manual_seed(200)
    for fname, model in models.items():
        _, shape = META[fname]
        loaded = torch.jit.load(os.path.join(OUT_DIR, fname))
        loaded.eval()
        for n in (1, 5, 9):
            if isinstance(shape[0], list):  # several inputs: token ids, then features
                args = (torch.randint(0, 50, (n, *shape[0][1:]), generator=g),
                        torch.randn(n, *shape[1][1:], generator=g))
            else:
                args = (torch.randn(n, *shape[1:], generator=g),)
            with torch.no_grad():
                a = model(*args)
                b = loaded(*args)
            assert a.shape == b.shape, (fname, a.shape, b.shape)
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (fname, (a - b).abs().max())
        print(f"[verify] {fname}: loaded output matches eager (n=1,5,9)")
        print(f"  loaded.original_name={loaded.original_name!r} "
              f"type={loaded._c._type().name()!r}")
        for name, m in loaded.named_modules():
            if name == "":
                continue
            print(f"    {name:14s} original_name={m.original_name:22s} "
                  f"type={m._c._type().name()!r} methods={sorted(m._c._method_names())}")

    tr = torch.jit.load(os.path.join(OUT_DIR, "convnet_traced.pt"))
    methods = sorted(tr.relu._c._method_names())
    print(f"[verify] convnet_traced relu methods: {methods}")
    assert "forward1" in methods and "forward2" in methods, methods
    for meth in methods:
        print(f"  --- relu.{meth} graph:")
        print("   ", str(getattr(tr.relu, meth).graph).strip().replace("\n", "\n    "))
    sc = torch.jit.load(os.path.join(OUT_DIR, "convnet_scripted.pt"))
    print(f"[verify] convnet_scripted relu methods: {sorted(sc.relu._c._method_names())}")


# --------------------------------------------------------------------------- CKA reference
def layer_list(model):
    return [{"name": n, "type": type(m).__name__} for n, m in model.named_modules() if n != ""]


def make_batches(seed, feat_shape):
    rs = np.random.RandomState(seed)
    return [rs.standard_normal((n,) + tuple(feat_shape)).astype(np.float32) for n in BATCH_SIZES]


def batches_json(batches):
    return [{"shape": list(b.shape), "data": [float(v) for v in b.reshape(-1)]} for b in batches]


def collect_features(model, x):
    """Run eager model with hooks on every submodule; return {name#k: float64 (n, d)}."""
    feats = OrderedDict()
    counts = {}
    handles = []

    def make_hook(name):
        def hook(mod, inp, out):
            if isinstance(out, (tuple, list)):
                out = next(o for o in out if isinstance(o, torch.Tensor))
            if not isinstance(out, torch.Tensor):
                return
            counts[name] = counts.get(name, 0) + 1
            key = name if counts[name] == 1 else f"{name}#{counts[name]}"
            feats[key] = out.detach().to(torch.float64).reshape(out.shape[0], -1).numpy()
        return hook

    for name, m in model.named_modules():
        if name:
            handles.append(m.register_forward_hook(make_hook(name)))
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in handles:
        h.remove()
    return feats, counts


def expand(request, counts):
    rows = []
    for r in request:
        if "#" in r:
            rows.append(r)
        else:
            k = counts[r]
            rows.extend([r] + [f"{r}#{i}" for i in range(2, k + 1)])
    return rows


def gram(X):
    K = X @ X.T
    np.fill_diagonal(K, 0.0)
    return K


def hsic1(K, L):
    n = K.shape[0]
    ones = np.ones(n)
    t1 = np.trace(K @ L)
    t2 = (ones @ K @ ones) * (ones @ L @ ones) / ((n - 1) * (n - 2))
    t3 = 2.0 / (n - 2) * (ones @ K @ L @ ones)
    return (t1 + t2 - t3) / (n * (n - 3))


def reference_cka(model1, model2, request1, request2, batches1, batches2):
    b2 = batches1 if batches2 is None else batches2
    rows = cols = None
    n1, n2 = len(request1), len(request2)
    acc_xy = acc_xx = acc_yy = None
    for x1, x2 in zip(batches1, b2):
        f1, c1 = collect_features(model1, x1)
        f2, c2 = collect_features(model2, x2)
        if rows is None:
            rows, cols = expand(request1, c1), expand(request2, c2)
            acc_xy = np.zeros((len(rows), len(cols)))
            acc_xx = np.zeros(len(rows))
            acc_yy = np.zeros(len(cols))
        Ks = [gram(f1[r]) for r in rows]
        Ls = [gram(f2[c]) for c in cols]
        for i, K in enumerate(Ks):
            acc_xx[i] += hsic1(K, K)
            for j, L in enumerate(Ls):
                acc_xy[i, j] += hsic1(K, L)
        for j, L in enumerate(Ls):
            acc_yy[j] += hsic1(L, L)
    cka = []
    for i in range(len(rows)):
        row = []
        for j in range(len(cols)):
            if acc_xx[i] <= 1e-12 or acc_yy[j] <= 1e-12:
                row.append(None)
            else:
                row.append(float(acc_xy[i, j] / math.sqrt(acc_xx[i] * acc_yy[j])))
        cka.append(row)
    return rows, cols, cka


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    if sys.argv[1:] == ["--only", "transformer"]:
        save_transformer()
        return
    if sys.argv[1:]:
        sys.exit(f"usage: {sys.argv[0]} [--only transformer]")
    save_transformer()
    models = build_models()
    save_models(models)
    verify_models(models)

    fixtures = []
    for fname, model in models.items():
        kind, shape = META[fname]
        fixtures.append({"file": fname, "kind": kind, "inputShape": shape,
                         "layers": layer_list(model)})
    with open(os.path.join(OUT_DIR, "fixtures.json"), "w") as f:
        json.dump(fixtures, f, indent=2)
        f.write("\n")

    mlp_in = make_batches(10, (12,))
    mlp_in_other = make_batches(11, (12,))
    conv_in = make_batches(12, (3, 8, 8))
    all_mlp = [n for n, _ in models["mlp_scripted.pt"].named_modules() if n]
    all_mlp2 = [n for n, _ in models["mlp_traced.pt"].named_modules() if n]
    inplace_in = make_batches(13, (6,))
    all_inplace = [n for n, _ in models["inplace_scripted.pt"].named_modules() if n]

    specs = [
        ("mlp_scripted.pt", "mlp_traced.pt", all_mlp, all_mlp2, mlp_in, None),
        ("convnet_traced.pt", "convnet_scripted.pt",
         ["stem", "block1", "relu", "block2.conv", "fc"],
         ["block3", "relu#2", "pool", "fc"], conv_in, None),
        ("mlp_scripted.pt", "mlp_scripted.pt", ["fc1", "act2", "out"], ["fc1", "act2", "out"],
         mlp_in, mlp_in_other),
        ("inplace_scripted.pt", "inplace_scripted.pt", all_inplace, all_inplace, inplace_in, None),
    ]
    comparisons = []
    for m1, m2, r1, r2, b1, b2 in specs:
        rows, cols, cka = reference_cka(models[m1], models[m2], r1, r2, b1, b2)
        comparisons.append({
            "model1": m1, "model2": m2,
            "request1": r1, "request2": r2,
            "layers1": rows, "layers2": cols,
            "batches1": batches_json(b1),
            "batches2": None if b2 is None else batches_json(b2),
            "cka": cka,
        })
        print(f"[cka] {m1} vs {m2}: rows={rows} cols={cols}")
        for name, row in zip(rows, cka):
            print(f"   {name:12s} " + " ".join("  null " if v is None else f"{v:.4f}" for v in row))

    ref = {
        "description": "Minibatch linear CKA, unbiased HSIC (Nguyen et al. 2021 eq. 3), float64, "
                       "forward hooks on eager modules; batches2 null = same inputs as batches1. "
                       "Row/col names: 'name#k' = k-th call of module 'name'.",
        "comparisons": comparisons,
    }
    with open(os.path.join(OUT_DIR, "reference.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
