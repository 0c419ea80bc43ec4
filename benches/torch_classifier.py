#!/usr/bin/env python3
"""The Lucent classifier network, identical layer for layer, in PyTorch on the CPU.

Prints inference images/s at batch 1 and 64 and training seconds per epoch, the same figures
as `cargo bench --bench classifier`, so the ratio comes from one machine and one sitting.

Run (own venv, outside the repo):
    python3 -m venv ~/.cache/lucent-torch-venv
    ~/.cache/lucent-torch-venv/bin/pip install torch numpy
    ~/.cache/lucent-torch-venv/bin/python benches/torch_classifier.py \
        --data ../shared/data/pneumoniamnist/pneumoniamnist_trainval.npz

Network (src/ml/model.rs): stem conv3x3(1->24, no bias)+BN+ReLU; one basic residual block per
stage at 24, 48 (stride 2), 96 (stride 2) channels with 1x1 projection shortcuts where the
shape changes; global average pooling; dropout 0.2; linear 96->1. Training: AdamW (lr 3e-3,
weight decay 5e-4, eps 1e-5 as burn), batch 64, class-weighted BCE, the same augmentation
(rotation/scale/shift via affine_grid, gamma, contrast, brightness; no flips).
"""
import argparse
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.short is None else self.short(x)))


class Net(nn.Module):
    def __init__(self, width=24, blocks=(1, 1, 1), dropout=0.2):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        layers, cin = [], width
        for stage, n in enumerate(blocks):
            cout = width << stage
            for b in range(n):
                layers.append(Block(cin, cout, 2 if stage > 0 and b == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(cin, 1)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        x = self.blocks(x).mean(dim=(2, 3))
        return self.head(self.drop(x)).squeeze(1)


def augment(x, g):
    n = x.shape[0]
    ang = (torch.rand(n, generator=g) * 2 - 1) * math.radians(10)
    sc = 0.9 + torch.rand(n, generator=g) * 0.2
    tx = (torch.rand(n, generator=g) * 2 - 1) * 0.16  # ±8 % of the side in [-1, 1] coordinates
    ty = (torch.rand(n, generator=g) * 2 - 1) * 0.16
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, sin, -tx], 1), torch.stack([-sin, cos, -ty], 1)], 1)
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gamma = (0.8 + torch.rand(n, 1, 1, 1, generator=g) * 0.45)
    x = x.clamp(0, 1) ** gamma
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    c = 0.8 + torch.rand(n, 1, 1, 1, generator=g) * 0.4
    b = (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * 0.08
    return ((x - mean) * c + mean + b).clamp(0, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/pneumoniamnist/pneumoniamnist_trainval.npz")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    print(f"command: python benches/torch_classifier.py --data {args.data}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    d = np.load(args.data)
    xtr = torch.from_numpy(d["train_images"]).float().unsqueeze(1) / 255.0
    ytr = torch.from_numpy(d["train_labels"].reshape(-1)).float()
    xva = torch.from_numpy(d["val_images"]).float().unsqueeze(1) / 255.0
    mean, std = xtr.mean().item(), xtr.std().item()
    torch.manual_seed(1)
    net = Net()
    net.eval()
    xv = (xva - mean) / std
    with torch.no_grad():
        for batch in (1, 64):
            n = 128 if batch == 1 else xv.shape[0]
            for i in range(0, n, batch):  # warm-up
                net(xv[i:i + batch])
            t0, images = time.perf_counter(), 0
            while time.perf_counter() - t0 < 2.0:
                for i in range(0, n, batch):
                    net(xv[i:i + batch])
                images += n
            print(f"torch cpu: inference batch {batch:>2}: {images / (time.perf_counter() - t0):.0f} images/s")

    pos = ytr.sum().item()
    w_pos, w_neg = len(ytr) / (2 * pos), len(ytr) / (2 * (len(ytr) - pos))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=5e-4, eps=1e-5)
    g = torch.Generator().manual_seed(1)
    for epoch in range(1, args.epochs + 1):
        net.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 64):
            idx = perm[i:i + 64]
            if len(idx) < 2:
                continue
            x = (augment(xtr[idx], g) - mean) / std
            y = ytr[idx]
            w = torch.where(y > 0.5, torch.tensor(w_pos), torch.tensor(w_neg))
            loss = F.binary_cross_entropy_with_logits(net(x), y, weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            for i in range(0, xv.shape[0], 256):
                net(xv[i:i + 256])
        print(f"torch cpu training: epoch {epoch} {time.perf_counter() - t0:.1f} s (4708 images, batch 64, augmentation, plus validation of 524)")


if __name__ == "__main__":
    main()
