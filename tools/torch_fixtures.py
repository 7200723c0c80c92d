"""Write small PyTorch reference fixtures for nnc's reference interpreter (forward and autodiff).

For every case in CASES below this script builds a small PyTorch module with a fixed seed and writes, under
tests/fixtures/torch/:

    <case>.nn                  the same network in nnc's language; its parameter names (labels, seq positions,
                               bound names) equal the module's state_dict keys
    <case>.weights.safetensors the state_dict in float32, without `num_batches_tracked` (batch-norm running
                               stats included, set to non-default values, as are the batch-norm affine params)
    <case>.io.safetensors      input.<input name>        float32 (int64 for token ids), batch 2 (4 for the
                                                         batchnorm_* cases)
                               dout.<output name>        float32, a random upstream gradient for that output
                               output.<output name>      float64
                               grad.<param name>         float32 (rounded from float64), for every trainable parameter
                               grad_input.<input name>   float32 (rounded from float64), for every float input
                               running_after.<bn>.running_mean / .running_var
                                                         float64, train-mode cases only: the buffers after the
                                                         single forward pass (momentum 0.1, unbiased variance)
    cases.txt                  one line per case: `<case> <train|eval>`

Outputs and gradients are computed in float64: the float32 weights and inputs are cast to float64, so the
reference is exact for those float32 values. The gradients are those of sum over outputs of sum(output * dout).
In `train` mode batch norm normalises with the batch statistics (biased variance) and updates its running
stats once; in `eval` mode it uses the running stats. No fixture model contains dropout.

How to run (from the repository root):

    pip install torch torchvision safetensors numpy
    python tools/torch_fixtures.py                        # writes tests/fixtures/torch/*
    python tools/torch_fixtures.py --verify target/debug/nnc
        # also runs `nnc check` and `nnc dump` on every .nn and compares parameter names and shapes with the
        # weights file, and input and output names and shapes with the io file
    python tools/torch_fixtures.py --resnet50 [--nnc target/release/nnc]
        # only: compares `nnc run models/resnet50.nn` with torchvision's resnet50 (random init, eval mode)

The fixtures were generated with torch 2.15.0 (CPU), torchvision 0.29.2, safetensors 0.8.0, numpy 2.4.6.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision.models.inception import BasicConv2d
from torchvision.models.resnet import BasicBlock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "torch")


# ---------------------------------------------------------------------------------------------------------
# 1. lenet5
# ---------------------------------------------------------------------------------------------------------

LENET5_NN = """\
// LeNet-5 as models/lenet5.nn: conv 6@5x5 tanh, 2x2 max-pool, conv 16@5x5 tanh, 2x2 max-pool, dense 120 tanh,
// dense 84 tanh, dense 10 softmax. Reference: tools/torch_fixtures.py (eval mode).

model lenet5(x: f32[N, 1, 28, 28]) -> probs: f32[N, 10] {
    h = x |> c1: conv2d(6, 5, activation=tanh) |> s2: maxpool(2)
          |> c3: conv2d(16, 5, activation=tanh) |> s4: maxpool(2)
          |> flatten
    h = h |> f5: dense(120, activation=tanh) |> f6: dense(84, activation=tanh)
    return h |> out: dense(10, activation=softmax)
}
"""


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.f5 = nn.Linear(256, 120)
        self.f6 = nn.Linear(120, 84)
        self.out = nn.Linear(84, 10)

    def forward(self, x):
        h = F.max_pool2d(torch.tanh(self.c1(x)), 2)
        h = F.max_pool2d(torch.tanh(self.c3(h)), 2)
        h = torch.flatten(h, 1)
        h = torch.tanh(self.f6(torch.tanh(self.f5(h))))
        return (F.softmax(self.out(h), dim=1),)


def case_lenet5(g):
    return dict(
        module=LeNet5(),
        nn=LENET5_NN,
        inputs={"x": torch.randn(2, 1, 28, 28, generator=g)},
        outputs=["probs"],
    )


# ---------------------------------------------------------------------------------------------------------
# 2. resnet_small: resnet18 topology, 16 base channels, 32x32, 10 classes, torchvision names
# ---------------------------------------------------------------------------------------------------------

RESNET_SMALL_NN = """\
// ResNet-18 topology (torchvision layout and names) with 16 base channels (16, 32, 64, 128), 32x32 input and
// 10 classes. Reference: tools/torch_fixtures.py (train mode: batch statistics, running stats updated).

// torchvision's BasicBlock: two 3x3 convolutions, the first carries the stride; a 1x1 projection shortcut
// (downsample.0 conv, downsample.1 batch norm) when the shape changes.
block basic_block(x: tensor, planes: int, stride: int = 1) {
    h = x |> conv1: conv2d(planes, 3, stride=stride, padding=1, bias=false) |> bn1: batchnorm |> relu
    h = h |> conv2: conv2d(planes, 3, padding=1, bias=false) |> bn2: batchnorm
    shortcut = if stride != 1 || x.shape[1] != planes {
        x |> downsample: seq { conv2d(planes, 1, stride=stride, bias=false); batchnorm }
    } else {
        x
    }
    return relu(h + shortcut)
}

model resnet_small(x: f32[N, 3, 32, 32]) -> logits: f32[N, 10] {
    h = x |> conv1: conv2d(16, 7, stride=2, padding=3, bias=false) |> bn1: batchnorm |> relu
          |> maxpool: maxpool(3, stride=2, padding=1)
    h = h |> layer1: seq { basic_block(16) * 2 }
          |> layer2: seq { basic_block(32, stride=2); basic_block(32) }
          |> layer3: seq { basic_block(64, stride=2); basic_block(64) }
          |> layer4: seq { basic_block(128, stride=2); basic_block(128) }
    return h |> avgpool: global_avgpool |> flatten |> fc: dense(10)
}
"""


class ResNetSmall(nn.Module):
    """torchvision.models.ResNet's structure (which hard-codes 64 base channels) with 16 base channels."""

    def __init__(self, widths=(16, 32, 64, 128), blocks=(2, 2, 2, 2), num_classes=10):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        for i, (w, n) in enumerate(zip(widths, blocks)):
            setattr(self, f"layer{i + 1}", self._make_layer(w, n, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def _make_layer(self, planes, n, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward(self, x):
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return (self.fc(torch.flatten(self.avgpool(h), 1)),)


def case_resnet_small(g):
    return dict(
        module=ResNetSmall(),
        nn=RESNET_SMALL_NN,
        inputs={"x": torch.randn(2, 3, 32, 32, generator=g)},
        outputs=["logits"],
    )


# ---------------------------------------------------------------------------------------------------------
# 3. inception_a: torchvision's InceptionA layout with small widths
# ---------------------------------------------------------------------------------------------------------

# torchvision's InceptionA hard-codes the inner widths 64, 48->64, 64->96->96; here they are divided by 4 to
# keep the fixture small. Layout, names, BasicConv2d (conv without bias, BN eps 1e-3, ReLU) and the pooling
# branch (avg_pool2d 3, stride 1, padding 1, count_include_pad=True) are torchvision's.
INCEPTION_WIDTHS = dict(b1x1=16, b5x5_1=12, b5x5_2=16, b3dbl_1=16, b3dbl_2=24, b3dbl_3=24)

INCEPTION_A_NN = """\
// torchvision's Inception-v3 InceptionA block (layout, names, BasicConv2d = conv without bias, batch norm eps
// 1e-3, ReLU) with in_channels 16, pool_features 8 and the inner widths divided by 4 (16, 12->16, 16->24->24),
// on a 9x9 input. Reference: tools/torch_fixtures.py (eval mode).

block conv_bn(x: tensor, filters: int, kernel: any, padding: any = 0) {
    return x |> conv: conv2d(filters, kernel, padding=padding, bias=false)
             |> bn: batchnorm(eps=1e-3) |> relu
}

model inception_a(x: f32[N, 16, 9, 9]) -> y: f32[N, 64, 9, 9] {
    b1 = x |> branch1x1: conv_bn(16, 1)
    b5 = x |> branch5x5_1: conv_bn(12, 1) |> branch5x5_2: conv_bn(16, 5, padding=2)
    b3 = x |> branch3x3dbl_1: conv_bn(16, 1)
           |> branch3x3dbl_2: conv_bn(24, 3, padding=1)
           |> branch3x3dbl_3: conv_bn(24, 3, padding=1)
    bp = x |> avgpool(3, stride=1, padding=1) |> branch_pool: conv_bn(8, 1)
    return concat(b1, b5, b3, bp)
}
"""


class InceptionASmall(nn.Module):
    """torchvision.models.inception.InceptionA with parameterised inner widths."""

    def __init__(self, in_channels=16, pool_features=8, w=INCEPTION_WIDTHS):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, w["b1x1"], kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, w["b5x5_1"], kernel_size=1)
        self.branch5x5_2 = BasicConv2d(w["b5x5_1"], w["b5x5_2"], kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, w["b3dbl_1"], kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(w["b3dbl_1"], w["b3dbl_2"], kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(w["b3dbl_2"], w["b3dbl_3"], kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return (torch.cat([b1, b5, b3, bp], 1),)


def case_inception_a(g):
    return dict(
        module=InceptionASmall(),
        nn=INCEPTION_A_NN,
        inputs={"x": torch.randn(2, 16, 9, 9, generator=g)},
        outputs=["y"],
    )


# ---------------------------------------------------------------------------------------------------------
# 4. alexnet_lrn: the paper AlexNet's first two stages (with LRN), small widths
# ---------------------------------------------------------------------------------------------------------

ALEXNET_LRN_NN = """\
// The first two stages of the paper AlexNet (Krizhevsky et al. 2012) with small widths (16 and 32 filters
// instead of 96 and 256): conv 11x11/4, ReLU, LRN(5, alpha=1e-4, beta=0.75, k=2), max-pool 3/2, conv 5x5 pad 2,
// ReLU, LRN, max-pool 3/2, on a 3x67x67 input with pixel-scale values (std 100) so that the LRN matters.
// Reference: tools/torch_fixtures.py (eval mode).

model alexnet_lrn(x: f32[N, 3, 67, 67]) -> features: f32[N, 32, 3, 3] {
    h = x |> conv1: conv2d(16, 11, stride=4, activation=relu)
          |> norm1: lrn(5, alpha=1e-4, beta=0.75, k=2.0)
          |> pool1: maxpool(3, stride=2)
    return h |> conv2: conv2d(32, 5, padding=2, activation=relu)
             |> norm2: lrn(5, alpha=1e-4, beta=0.75, k=2.0)
             |> pool2: maxpool(3, stride=2)
}
"""


class AlexNetLRN(nn.Module):
    def __init__(self, c1=16, c2=32):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c1, 11, stride=4)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)

    def forward(self, x):
        h = F.max_pool2d(self.lrn(F.relu(self.conv1(x))), 3, stride=2)
        return (F.max_pool2d(self.lrn(F.relu(self.conv2(h))), 3, stride=2),)


def case_alexnet_lrn(g):
    return dict(
        module=AlexNetLRN(),
        nn=ALEXNET_LRN_NN,
        inputs={"x": 100.0 * torch.randn(2, 3, 67, 67, generator=g)},
        outputs=["features"],
    )


# ---------------------------------------------------------------------------------------------------------
# 5. batchnorm_train / batchnorm_eval
# ---------------------------------------------------------------------------------------------------------

BATCHNORM_NN = """\
// Batch norm after a convolution (BatchNorm2d) and after a dense layer (BatchNorm1d), eps 1e-5, momentum 0.1,
// with non-default running stats and affine parameters in the weights file.
// Reference: tools/torch_fixtures.py ({mode} mode{note}).

model {name}(x: f32[N, 3, 6, 6], v: f32[N, 5]) -> (y: f32[N, 4, 4, 4], z: f32[N, 3]) {{
    y = x |> conv: conv2d(4, 3) |> bn: batchnorm(eps=1e-5, momentum=0.1) |> relu
    z = v |> fc: dense(3) |> bn1d: batchnorm(eps=1e-5, momentum=0.1)
    return y, z
}}
"""


class BatchNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4, eps=1e-5, momentum=0.1)
        self.fc = nn.Linear(5, 3)
        self.bn1d = nn.BatchNorm1d(3, eps=1e-5, momentum=0.1)

    def forward(self, x, v):
        return F.relu(self.bn(self.conv(x))), self.bn1d(self.fc(v))


def _batchnorm_case(name, mode, note):
    def make(g):
        # Batch 4 rather than 2: with two samples a batch-normalised feature is just +-1.
        return dict(
            module=BatchNormNet(),
            nn=BATCHNORM_NN.format(name=name, mode=mode, note=note),
            inputs={"x": torch.randn(4, 3, 6, 6, generator=g), "v": torch.randn(4, 5, generator=g)},
            outputs=["y", "z"],
        )

    return make


# ---------------------------------------------------------------------------------------------------------
# 6. rnn, lstm, gru
# ---------------------------------------------------------------------------------------------------------

RECURRENT_NN = """\
// {what}: input [N, 5, 4], hidden 6, {ret}. torch.nn.{cls}(4, 6, batch_first=True), zero initial state;
// parameter names are the layer label plus torch's weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0.
// Reference: tools/torch_fixtures.py (eval mode).

model {name}(x: f32[N, 5, 4]) -> h: f32[{out}] {{
    return x |> {name}: {layer}(6, return_sequences={seq})
}}
"""


class Recurrent(nn.Module):
    def __init__(self, name, cls, return_sequences):
        super().__init__()
        self.name = name
        setattr(self, name, cls(4, 6, batch_first=True))
        self.return_sequences = return_sequences

    def forward(self, x):
        out, _ = getattr(self, self.name)(x)
        return (out if self.return_sequences else out[:, -1],)


def _recurrent_case(name, layer, cls, what, return_sequences):
    def make(g):
        text = RECURRENT_NN.format(
            name=name,
            layer=layer,
            cls=cls.__name__,
            what=what,
            ret="every step returned" if return_sequences else "the last hidden state h_T returned",
            out="N, 5, 6" if return_sequences else "N, 6",
            seq="true" if return_sequences else "false",
        )
        return dict(
            module=Recurrent(name, cls, return_sequences),
            nn=text,
            inputs={"x": torch.randn(2, 5, 4, generator=g)},
            outputs=["h"],
        )

    return make


# ---------------------------------------------------------------------------------------------------------
# 7. pool_pad: parameter-free ops whose edge semantics must match PyTorch
# ---------------------------------------------------------------------------------------------------------

POOL_PAD_NN = """\
// A grab-bag of parameter-free ops whose edge semantics must match PyTorch: max pooling with ceil_mode (a
// partial last window; a last window that would start in the bottom padding is dropped), average pooling with
// and without count_include_pad (also with ceil_mode, where PyTorch divides by the window clipped to the
// padded input), adaptive average pooling 7 -> 3 (overlapping bins), asymmetric zero padding, leaky ReLU,
// sigmoid, softmax on axis 1 and -1, dense. Reference: tools/torch_fixtures.py (eval mode).

model pool_pad(x: f32[N, 2, 7, 7]) -> (q4: f32[N, 12, 4, 4], q3: f32[N, 4, 3, 3], q5: f32[N, 4, 5, 5],
                                       padded: f32[N, 2, 10, 10], probs: f32[N, 4]) {
    h = x |> leaky_relu(0.2)
    p = h |> zeropad([0, 1, 0, 1])                                          // 8x8
    m0 = h |> maxpool(3, stride=2, ceil_mode=true)                          // 3x3, fits exactly
    m1 = h |> maxpool(2, stride=2, ceil_mode=true)                          // 4x4, last window 1 wide
    m2 = h |> maxpool(2, stride=2, padding=1, ceil_mode=true)               // 4x4, 5th window dropped
    m3 = p |> maxpool(3, stride=2, ceil_mode=true)                          // 4x4, last window 2 wide
    a0 = h |> avgpool(3, stride=2, padding=1)                               // 4x4, count_include_pad
    a1 = h |> avgpool(3, stride=2, padding=1, count_include_pad=false)      // 4x4
    a2 = h |> avgpool(2, stride=2, ceil_mode=true)                          // 4x4, last window divides by 1
    a3 = h |> avgpool(4, stride=2, padding=2, ceil_mode=true)               // 5x5, last window divides by 3x3
    a4 = h |> avgpool(4, stride=2, padding=2, ceil_mode=true, count_include_pad=false)  // 5x5, by 1x1
    g = h |> adaptive_avgpool(3)                                            // 3x3, bins [0,3) [2,5) [4,7)
    q4 = concat(m1, m2, m3, a0, a1, a2)
    q3 = concat(m0, g) |> softmax(axis=1)
    q5 = concat(a3, a4)
    padded = h |> zeropad([1, 2, 0, 3])                                     // top 1, bottom 2, left 0, right 3
    probs = q4 |> flatten |> fc: dense(8) |> sigmoid |> fc2: dense(4) |> softmax
    return q4, q3, q5, padded, probs
}
"""


class PoolPad(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12 * 16, 8)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x):
        h = F.leaky_relu(x, 0.2)
        p = F.pad(h, (0, 1, 0, 1))  # (left, right, top, bottom)
        m0 = F.max_pool2d(h, 3, stride=2, ceil_mode=True)
        m1 = F.max_pool2d(h, 2, stride=2, ceil_mode=True)
        m2 = F.max_pool2d(h, 2, stride=2, padding=1, ceil_mode=True)
        m3 = F.max_pool2d(p, 3, stride=2, ceil_mode=True)
        a0 = F.avg_pool2d(h, 3, stride=2, padding=1)
        a1 = F.avg_pool2d(h, 3, stride=2, padding=1, count_include_pad=False)
        a2 = F.avg_pool2d(h, 2, stride=2, ceil_mode=True)
        a3 = F.avg_pool2d(h, 4, stride=2, padding=2, ceil_mode=True)
        a4 = F.avg_pool2d(h, 4, stride=2, padding=2, ceil_mode=True, count_include_pad=False)
        g = F.adaptive_avg_pool2d(h, 3)
        q4 = torch.cat([m1, m2, m3, a0, a1, a2], 1)
        q3 = F.softmax(torch.cat([m0, g], 1), dim=1)
        q5 = torch.cat([a3, a4], 1)
        padded = F.pad(h, (0, 3, 1, 2))
        probs = F.softmax(self.fc2(torch.sigmoid(self.fc(torch.flatten(q4, 1)))), dim=-1)
        return q4, q3, q5, padded, probs


def case_pool_pad(g):
    return dict(
        module=PoolPad(),
        nn=POOL_PAD_NN,
        inputs={"x": torch.randn(2, 2, 7, 7, generator=g)},
        outputs=["q4", "q3", "q5", "padded", "probs"],
    )


# ---------------------------------------------------------------------------------------------------------
# 8. embedding_text
# ---------------------------------------------------------------------------------------------------------

EMBEDDING_TEXT_NN = """\
// Token ids (vocabulary 20, 7 per sequence) -> embedding 5 -> LSTM 6 (last hidden state) -> dense 3. Some token
// ids repeat (their embedding gradients add up) and some never occur (zero gradient).
// Reference: tools/torch_fixtures.py (eval mode).

model embedding_text(tokens: i64[N, 7]) -> logits: f32[N, 3] {
    h = tokens |> embedding: embedding(20, 5)
    return h |> encoder: lstm(6, return_sequences=false) |> classifier: dense(3)
}
"""


class EmbeddingText(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(20, 5)
        self.encoder = nn.LSTM(5, 6, batch_first=True)
        self.classifier = nn.Linear(6, 3)

    def forward(self, tokens):
        out, _ = self.encoder(self.embedding(tokens))
        return (self.classifier(out[:, -1]),)


def case_embedding_text(g):
    tokens = torch.randint(0, 20, (2, 7), generator=g, dtype=torch.int64)
    tokens[1, 4] = tokens[0, 2]  # make sure at least one id repeats
    tokens[1, 6] = tokens[1, 0]
    return dict(module=EmbeddingText(), nn=EMBEDDING_TEXT_NN, inputs={"tokens": tokens}, outputs=["logits"])


# ---------------------------------------------------------------------------------------------------------

CASES = [
    ("lenet5", "eval", case_lenet5),
    ("resnet_small", "train", case_resnet_small),
    ("inception_a", "eval", case_inception_a),
    ("alexnet_lrn", "eval", case_alexnet_lrn),
    ("batchnorm_train", "train",
     _batchnorm_case("batchnorm_train", "train", ": batch statistics, running stats updated")),
    ("batchnorm_eval", "eval", _batchnorm_case("batchnorm_eval", "eval", ": running stats")),
    ("rnn", "eval", _recurrent_case("rnn", "simple_rnn", nn.RNN, "Simple RNN (tanh)", True)),
    ("lstm", "eval", _recurrent_case("lstm", "lstm", nn.LSTM, "LSTM (gates i, f, g, o)", False)),
    ("gru", "eval", _recurrent_case("gru", "gru", nn.GRU, "GRU (gates r, z, n)", True)),
    ("pool_pad", "eval", case_pool_pad),
    ("embedding_text", "eval", case_embedding_text),
]


def _randomize_batchnorm(module, g):
    """Non-default affine parameters and running stats for every batch norm, so that they matter."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.3 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))


def _state_dict_f32(module):
    return {
        k: v.detach().to(torch.float32).contiguous().clone()
        for k, v in module.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


def make_case(name, mode, make):
    seed = zlib.crc32(name.encode())
    torch.manual_seed(seed)  # default initialisation of the layers
    g = torch.Generator().manual_seed(seed)  # inputs, dout, batch-norm stats
    spec = make(g)
    module = spec["module"]
    _randomize_batchnorm(module, g)
    weights = _state_dict_f32(module)
    inputs = {k: v.contiguous() for k, v in spec["inputs"].items()}

    # The reference: the float32 weights and inputs cast to float64.
    module.load_state_dict({k: v for k, v in weights.items()}, strict=False)
    module = module.double()
    module.train(mode == "train")
    xs = []
    for k, v in inputs.items():
        if v.is_floating_point():
            xs.append(v.double().requires_grad_(True))
        else:
            xs.append(v)
    outs = module(*xs)
    assert len(outs) == len(spec["outputs"])
    douts = {n: torch.randn(o.shape, generator=g, dtype=torch.float32) for n, o in zip(spec["outputs"], outs)}
    loss = sum((o * douts[n].double()).sum() for n, o in zip(spec["outputs"], outs))
    loss.backward()

    io = {}
    for k, v in inputs.items():
        io[f"input.{k}"] = v
    for n, o in zip(spec["outputs"], outs):
        io[f"dout.{n}"] = douts[n]
        io[f"output.{n}"] = o.detach().contiguous()
    for k, p in module.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {k}"
        io[f"grad.{k}"] = p.grad.detach().to(torch.float32).contiguous()
    for (k, v), x in zip(inputs.items(), xs):
        if v.is_floating_point():
            io[f"grad_input.{k}"] = x.grad.detach().to(torch.float32).contiguous()
    if mode == "train":
        for path, m in module.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                io[f"running_after.{path}.running_mean"] = m.running_mean.detach().clone()
                io[f"running_after.{path}.running_var"] = m.running_var.detach().clone()

    with open(os.path.join(OUT_DIR, f"{name}.nn"), "w") as f:
        f.write(spec["nn"])
    save_file(weights, os.path.join(OUT_DIR, f"{name}.weights.safetensors"))
    save_file(io, os.path.join(OUT_DIR, f"{name}.io.safetensors"))
    for suffix in ("weights", "io"):
        os.chmod(os.path.join(OUT_DIR, f"{name}.{suffix}.safetensors"), 0o644)


def write_all(only=None):
    os.makedirs(OUT_DIR, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    for name, mode, make in CASES:
        if only and name not in only:
            continue
        make_case(name, mode, make)
        print(f"wrote {name} ({mode})")
    with open(os.path.join(OUT_DIR, "cases.txt"), "w") as f:
        for name, mode, _ in CASES:
            f.write(f"{name} {mode}\n")


# ---------------------------------------------------------------------------------------------------------
# Verification against nnc (--verify NNC)
# ---------------------------------------------------------------------------------------------------------

_NODE = re.compile(r"^%(\d+) = (\w+)(.*?) : (\w+)\[([^\]]*)\]\s+#\s+(\S+)$")
_OUTPUT = re.compile(r"^output (\w+) = %(\d+)$")
_DTYPES = {"f32": torch.float32, "f64": torch.float64, "i32": torch.int32, "i64": torch.int64}


def _dims(text, batch):
    return [batch if d.strip() == "N" or not d.strip().isdigit() else int(d) for d in text.split(",") if d.strip()]


def verify(nnc):
    from safetensors.torch import load_file

    ok = True
    for name, mode, _ in CASES:
        path = os.path.join(OUT_DIR, f"{name}.nn")
        errors = []
        r = subprocess.run([nnc, "check", path], capture_output=True, text=True)
        if r.returncode != 0:
            errors.append(f"nnc check failed:\n{r.stdout}{r.stderr}")
        r = subprocess.run([nnc, "dump", path], capture_output=True, text=True)
        if r.returncode != 0:
            errors.append(f"nnc dump failed:\n{r.stdout}{r.stderr}")
        weights = load_file(os.path.join(OUT_DIR, f"{name}.weights.safetensors"))
        io = load_file(os.path.join(OUT_DIR, f"{name}.io.safetensors"))
        batch = next(v for k, v in io.items() if k.startswith("input.")).shape[0]
        nodes, params, inputs, outputs, trainable = {}, {}, {}, {}, set()
        for line in r.stdout.splitlines():
            m = _NODE.match(line.strip())
            if m:
                idx, op, attrs, dtype, shape, label = m.groups()
                nodes[idx] = (dtype, _dims(shape, batch))
                if op == "param":
                    params[label] = nodes[idx]
                    if "trainable=true" in attrs:
                        trainable.add(label)
                elif op == "input":
                    inputs[label] = nodes[idx]
            m = _OUTPUT.match(line.strip())
            if m:
                outputs[m.group(1)] = nodes[m.group(2)]
        if set(params) != set(weights):
            errors.append(
                f"param names differ: only in nnc {sorted(set(params) - set(weights))}, "
                f"only in weights {sorted(set(weights) - set(params))}"
            )
        for k in set(params) & set(weights):
            if params[k][1] != list(weights[k].shape):
                errors.append(f"{k}: nnc shape {params[k][1]} != weights {list(weights[k].shape)}")
        grads = {k[len("grad."):] for k in io if k.startswith("grad.")}
        if grads != trainable:
            errors.append(f"grad keys {sorted(grads ^ trainable)} differ from nnc's trainable params")
        want_in = {k[len("input."):] for k in io if k.startswith("input.")}
        if want_in != set(inputs):
            errors.append(f"inputs: nnc {sorted(inputs)} != io {sorted(want_in)}")
        for k, (dtype, shape) in inputs.items():
            t = io.get(f"input.{k}")
            if t is not None and (list(t.shape) != shape or t.dtype != _DTYPES[dtype]):
                errors.append(f"input {k}: nnc {dtype}{shape} != io {t.dtype}{list(t.shape)}")
        want_out = {k[len("output."):] for k in io if k.startswith("output.")}
        if want_out != set(outputs):
            errors.append(f"outputs: nnc {sorted(outputs)} != io {sorted(want_out)}")
        for k, (dtype, shape) in outputs.items():
            t = io.get(f"output.{k}")
            if t is not None and list(t.shape) != shape:
                errors.append(f"output {k}: nnc shape {shape} != io {list(t.shape)}")
        if errors:
            ok = False
            print(f"FAIL {name}:\n  " + "\n  ".join(errors))
        else:
            print(f"ok   {name}: {len(params)} params, inputs {sorted(inputs)}, outputs {sorted(outputs)}")
    return ok


# ---------------------------------------------------------------------------------------------------------
# resnet50 end to end (--resnet50): nnc run vs torchvision
# ---------------------------------------------------------------------------------------------------------


def check_resnet50(nnc=os.path.join(ROOT, "target", "release", "nnc")):
    """Run models/resnet50.nn with `nnc run` on torchvision resnet50's random-init weights and compare logits."""
    import torchvision.models as tvm

    torch.manual_seed(0)
    model = tvm.resnet50(weights=None).eval()
    weights = _state_dict_f32(model)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    with torch.no_grad():
        ref32 = model(x).numpy()
        ref64 = model.double()(x.double()).numpy()
    with tempfile.TemporaryDirectory() as d:
        wpath = os.path.join(d, "resnet50.safetensors")
        xpath = os.path.join(d, "x.npy")
        ypath = os.path.join(d, "y.npy")
        save_file(weights, wpath)
        np.save(xpath, x.numpy())
        cmd = [nnc, "run", os.path.join(ROOT, "models", "resnet50.nn"), "--weights", wpath, "--input", xpath,
               "--output", ypath]
        print("$ " + " ".join(cmd))
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"nnc run failed (exit {r.returncode}):\n{r.stdout}{r.stderr}")
            return False
        y = np.load(ypath)
    if y.shape != ref64.shape:
        print(f"shape mismatch: nnc {y.shape}, torch {ref64.shape}")
        return False
    y64 = y.astype(np.float64)
    for label, ref in (("float64", ref64), ("float32", ref32.astype(np.float64))):
        abs_err = np.abs(y64 - ref)
        rel_err = abs_err / np.maximum(np.abs(ref), 1e-12)
        print(f"vs torch {label}: max abs err {abs_err.max():.3e}, max rel err {rel_err.max():.3e} "
              f"(logits max |.| {np.abs(ref).max():.3e}), argmax equal: {int(y64.argmax()) == int(ref.argmax())}")
    # scale-aware tolerance: float32 accumulation over ~50 layers
    err = np.abs(y64 - ref64).max() / max(np.abs(ref64).max(), 1e-12)
    print("resnet50:", "ok" if err < 1e-4 else "MISMATCH", f"(max abs err / max |logit| = {err:.3e})")
    return err < 1e-4


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cases", nargs="*", help="only these cases (default: all)")
    ap.add_argument("--verify", metavar="NNC", help="after writing, check the .nn files with this nnc binary")
    ap.add_argument("--verify-only", action="store_true", help="with --verify: do not rewrite the fixtures")
    ap.add_argument("--resnet50", action="store_true", help="only run the resnet50 end-to-end comparison")
    ap.add_argument("--nnc", default=os.path.join(ROOT, "target", "release", "nnc"), help="nnc for --resnet50")
    args = ap.parse_args()
    if args.resnet50:
        sys.exit(0 if check_resnet50(args.nnc) else 1)
    if not args.verify_only:
        write_all(args.cases)
    if args.verify:
        sys.exit(0 if verify(args.verify) else 1)


if __name__ == "__main__":
    main()
