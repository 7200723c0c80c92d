"""Write reference PyTorch state_dict keys and shapes for nnc's pretrained-compatible models.

For each model listed in MODELS below, this script instantiates the reference PyTorch module
(torchvision or timm, random initialisation, no weights are downloaded) and writes
tests/fixtures/state_dict/<model>.txt with one line per state_dict entry, in state_dict order:

    <key> <dim0>x<dim1>x...

A 0-dimensional tensor is written with `-` as its shape. `num_batches_tracked` buffers
(BatchNorm step counters) are left out, since nnc has no counterpart for them.

These fixtures are what nnc's parameter names and shapes are compared against, so that
pretrained weights can later be loaded by name.

How to run (from the repository root):

    pip install torch torchvision timm
    python tools/state_dict_keys.py            # writes tests/fixtures/state_dict/*.txt
    python tools/state_dict_keys.py resnet50   # only the named models

The fixtures were generated with torch 2.15.0, torchvision 0.29.2 and timm 1.0.31 (real torch,
CPU). Keys and shapes do not depend on the random initialisation.
"""

import os
import sys

import timm
import torch
import torchvision.models as tvm


def _googlenet():
    return tvm.googlenet(weights=None, aux_logits=False, init_weights=False)


def _inception_v3():
    return tvm.inception_v3(weights=None, aux_logits=False, init_weights=False)


MODELS = {
    "alexnet": lambda: tvm.alexnet(weights=None),
    "vgg16": lambda: tvm.vgg16(weights=None),
    "vgg19": lambda: tvm.vgg19(weights=None),
    "resnet18": lambda: tvm.resnet18(weights=None),
    "resnet34": lambda: tvm.resnet34(weights=None),
    "resnet50": lambda: tvm.resnet50(weights=None),
    "resnet101": lambda: tvm.resnet101(weights=None),
    "resnet152": lambda: tvm.resnet152(weights=None),
    "googlenet": _googlenet,
    "inception_v3": _inception_v3,
    "inception_v4": lambda: timm.create_model("inception_v4", pretrained=False),
    "inception_resnet_v2": lambda: timm.create_model("inception_resnet_v2", pretrained=False),
}

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "state_dict")


def state_dict_lines(module):
    lines = []
    for key, tensor in module.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        shape = "x".join(str(d) for d in tensor.shape) if tensor.dim() > 0 else "-"
        lines.append(f"{key} {shape}")
    return lines


def main(argv):
    names = argv or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        sys.exit(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(MODELS)}")
    os.makedirs(OUT_DIR, exist_ok=True)
    torch.manual_seed(0)
    for name in names:
        module = MODELS[name]()
        lines = state_dict_lines(module)
        path = os.path.join(OUT_DIR, f"{name}.txt")
        with open(path, "w", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{name}: {len(lines)} entries -> {os.path.relpath(path)}")
        del module


if __name__ == "__main__":
    main(sys.argv[1:])
