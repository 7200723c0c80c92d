#!/usr/bin/env python3
"""Times PyTorch eager (and onnxruntime when installed) beside `nnc bench` on the same model, batch and thread
count in one run, and prints the ratios. Not needed by CI; a developer installs the peers:

    pip install torch torchvision onnxruntime onnx
    python tools/compare.py --nnc target/release/nnc --model resnet50 --batch 1 --threads 2

Models: the torchvision names of the zoo (resnet18/34/50/101/152, vgg16/19, alexnet, googlenet, inception_v3).
The machine is shared and noisy (its speed changes in phases of seconds): the peers and nnc alternate in
rounds, every timed run of every round is pooled per peer (`nnc bench --json` lists its runs as `runs_ms`),
and both the medians and the minimums are compared. More, shorter rounds sample the phases more evenly.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time


def torch_model(name):
    import torch
    import torchvision

    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    m = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    size = 299 if name == "inception_v3" else 224
    return m, size


def time_torch(m, x, iters):
    import torch

    with torch.inference_mode():
        for _ in range(3):
            m(x)
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            m(x)
            times.append((time.perf_counter() - t) * 1e3)
    return times


def time_onnxruntime(m, x, threads, iters):
    try:
        import onnxruntime as ort
        import torch
    except ImportError:
        return None
    import io

    buf = io.BytesIO()
    torch.onnx.export(m, x, buf, input_names=["x"], output_names=["y"], dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    s = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    for _ in range(3):
        s.run(None, {"x": xn})
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        s.run(None, {"x": xn})
        times.append((time.perf_counter() - t) * 1e3)
    return times


def time_nnc(nnc, model, batch, threads, iters):
    out = subprocess.run(
        [nnc, "bench", f"models/{model}.nn", "--batch", str(batch), "--threads", str(threads),
         "--iters", str(iters), "--json"],
        check=True, capture_output=True, text=True,
    )
    r = json.loads(out.stdout)
    return r["runs_ms"], r["compile_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nnc", default="target/release/nnc")
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=6)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    m, size = torch_model(a.model)
    x = torch.rand(a.batch, 3, size, size) * 2 - 1
    rows = {"pytorch eager": [], "onnxruntime": [], "nnc": []}
    compile_ms = []
    for _ in range(a.rounds):
        rows["pytorch eager"] += time_torch(m, x, a.iters)
        ort = time_onnxruntime(m, x, a.threads, a.iters)
        if ort is not None:
            rows["onnxruntime"] += ort
        runs, comp = time_nnc(a.nnc, a.model, a.batch, a.threads, a.iters)
        rows["nnc"] += runs
        compile_ms.append(comp)
    print(f"{a.model} batch {a.batch}, {a.threads} threads, {a.rounds} rounds x {a.iters} runs "
          f"(torch {torch.__version__})")
    nnc_med, nnc_min = statistics.median(rows["nnc"]), min(rows["nnc"])
    for name, t in rows.items():
        if not t:
            print(f"  {name:<14} not installed")
            continue
        med = statistics.median(t)
        ratio = "" if name == "nnc" else (
            f"   nnc/{name}: {nnc_med / med:5.2f}x (minimums {nnc_min / min(t):5.2f}x)")
        print(f"  {name:<14} median {med:8.2f} ms   min {min(t):8.2f} ms{ratio}")
    print(f"  nnc compile (parse to native code): median {statistics.median(compile_ms):.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
