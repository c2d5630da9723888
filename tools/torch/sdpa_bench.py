#!/usr/bin/env python3
"""Times PyTorch's scaled_dot_product_attention forward per backend on given shapes.

`vkattn bench -torch PYTHON` runs this script with the sweep's shapes as JSON on stdin, so one
command on a CUDA machine gives vkattn's and PyTorch's numbers on the same shapes. It can also be
run by hand:

    python3 tools/torch/sdpa_bench.py shapes.json      # or: ... < shapes.json

Input: {"warmup": W, "iters": N, "shapes": [{"id": 0, "b": 8, "h": 16, "hk": 16, "lq": 2048,
"lk": 2048, "d": 128, "causal": true, "dtype": "f16"}, ...]} (or just the list of shapes).
W and N of 0 (or absent) mean automatic: 5 warm-up calls, then enough timed calls for about
half a second, at least 10 and at most 100.

Output, one JSON object per line: first {"torch": version, "device": name, ...}, then one per
shape: the shape's fields plus "ms", "tflops" and "gbps" (median, CUDA events) per backend
(flash, cudnn, efficient, math), null where the backend failed or was skipped, and "errors"
saying why. TFLOP/s count 4*B*H*Lq*Lk*d, halved when causal and Lq == Lk (the FlashAttention
convention); GB/s the bytes of K and V (2*B*Hk*Lk*d*element size), the measure of decoding
(`vkattn decode-bench`: a few queries, Hk < H, against long keys). The math backend is skipped
where Lq*Lk > 4096*4096 (it materializes the scores).
Progress and warnings go to stderr.
"""
import json
import math
import sys
import warnings

BACKENDS = ("flash", "cudnn", "efficient", "math")
MATH_MAX_L = 4096


def emit(obj):
    print(json.dumps(obj), flush=True)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def load_request(argv):
    text = open(argv[1]).read() if len(argv) > 1 and argv[1] != "-" else sys.stdin.read()
    req = json.loads(text)
    if isinstance(req, list):
        req = {"shapes": req}
    return req


def flops(s):
    f = 4.0 * s["b"] * s["h"] * s["lq"] * s["lk"] * s["d"]
    return f / 2 if s.get("causal") and s["lq"] == s["lk"] else f


def kv_bytes(s):
    return 2.0 * s["b"] * s["hk"] * s["lk"] * s["d"] * (4 if s["dtype"] == "f32" else 2)


def main(argv):
    req = load_request(argv)
    try:
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except Exception as ex:  # no PyTorch: say so on stdout too, for the caller's report
        emit({"error": "cannot import torch: %s" % ex})
        log("sdpa_bench: cannot import torch:", ex)
        return 1
    if not torch.cuda.is_available():
        emit({"error": "torch %s sees no CUDA device" % torch.__version__})
        log("sdpa_bench: no CUDA device")
        return 1
    # A backend that cannot run a shape says why in its exception (reported in "errors"); the
    # UserWarnings that PyTorch prints beside it are noise here.
    warnings.filterwarnings("ignore", category=UserWarning)
    dev = torch.device("cuda")
    emit({"torch": torch.__version__, "device": torch.cuda.get_device_name(dev),
          "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    dtypes = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}
    warmup = int(req.get("warmup") or 0) or 5
    iters = int(req.get("iters") or 0)

    def bench(fn):
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        n = iters
        if n <= 0:  # automatic: about half a second
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record(); fn(); e.record(); torch.cuda.synchronize()
            n = max(10, min(100, int(math.ceil(500.0 / max(s.elapsed_time(e), 1e-3)))))
        ts = []
        for _ in range(n):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record(); fn(); e.record(); torch.cuda.synchronize()
            ts.append(s.elapsed_time(e))
        ts.sort()
        m = len(ts) // 2
        return ts[m] if len(ts) % 2 else (ts[m - 1] + ts[m]) / 2

    shapes = req.get("shapes") or []
    for i, s in enumerate(shapes):
        s = dict(s)
        s.setdefault("id", i)
        s.setdefault("hk", s["h"])
        s.setdefault("lk", s["lq"])
        s.setdefault("dtype", "f16")
        s.setdefault("causal", False)
        row = dict(s, ms={}, tflops={}, gbps={}, errors={})
        length = "L=%d" % s["lq"] if s["lq"] == s["lk"] else "Lq=%d Lk=%d Hk=%d" % (s["lq"], s["lk"], s["hk"])
        log("sdpa_bench: [%d/%d] %s d=%d %s%s B=%d H=%d" % (i + 1, len(shapes), s["dtype"], s["d"], length,
            " causal" if s["causal"] else "", s["b"], s["h"]))
        q = k = v = None
        try:
            dt = dtypes[s["dtype"]]
            # SDPA's layout: [B, H, L, d].
            q = torch.randn(s["b"], s["h"], s["lq"], s["d"], device=dev, dtype=dt)
            k = torch.randn(s["b"], s["hk"], s["lk"], s["d"], device=dev, dtype=dt)
            v = torch.randn_like(k)
        except Exception as ex:
            for name in BACKENDS:
                row["ms"][name] = row["tflops"][name] = None
                row["errors"][name] = "inputs: %s" % ex
            emit(row)
            continue
        kwargs = {}
        if s["hk"] != s["h"]:
            kwargs["enable_gqa"] = True
        if s["causal"] and s["lq"] != s["lk"]:
            # vkattn aligns causal masks at the bottom-right corner; is_causal aligns top-left.
            from torch.nn.attention.bias import causal_lower_right
            kwargs["attn_mask"] = causal_lower_right(s["lq"], s["lk"])
        elif s["causal"]:
            kwargs["is_causal"] = True
        for name in BACKENDS:
            row["ms"][name] = row["tflops"][name] = row["gbps"][name] = None
            if name == "math" and s["lq"] * s["lk"] > MATH_MAX_L * MATH_MAX_L:
                row["errors"][name] = "skipped: Lq*Lk > %d^2" % MATH_MAX_L
                continue
            try:
                with sdpa_kernel(backends[name]):
                    t = bench(lambda: F.scaled_dot_product_attention(q, k, v, **kwargs))
                row["ms"][name] = round(t, 4)
                row["tflops"][name] = round(flops(s) / t / 1e9, 2)
                row["gbps"][name] = round(kv_bytes(s) / t / 1e6, 1)
            except Exception as ex:
                row["errors"][name] = str(ex).strip().splitlines()[0][:300] if str(ex).strip() else type(ex).__name__
            torch.cuda.empty_cache()
        if not row["errors"]:
            del row["errors"]
        emit(row)
        del q, k, v
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
