"""The project's three networks (reader, detector, verifier). Small on purpose: they must run on one CPU core of a roadside unit."""

from __future__ import annotations

import torch
from torch import nn


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def slot_features() -> nn.Sequential:
    """[N,1,64,128] -> [N,64,4,16]: the slot readers' shared backbone (one definition, so the
    attention reader can start from the shipped slot reader's convolutions)."""
    return nn.Sequential(
        conv(1, 24), nn.MaxPool2d(2),  # 32x64
        conv(24, 48), nn.MaxPool2d(2),  # 16x32
        conv(48, 64), conv(64, 96), nn.MaxPool2d(2),  # 8x16
        conv(96, 128), nn.MaxPool2d((2, 1)),  # 4x16
        conv(128, 128),
        nn.Conv2d(128, 64, 1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
    )


class PlateOcrNet(nn.Module):
    """Fixed-slot reader: one classifier per character slot over a shared feature map.

    Slots (rather than CTC over columns) read two-line plates as easily as one-line ones: each slot
    head sees the whole plate and learns where its character sits."""

    def __init__(self, slots: int = 10, classes: int = 37, height: int = 64, width: int = 128):
        super().__init__()
        self.slots, self.classes = slots, classes
        self.features = slot_features()
        feat = 64 * (height // 16) * (width // 8)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(feat, slots * classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N,1,H,W] grey 0..255 -> logits [N, slots, classes]."""
        x = x / 127.5 - 1.0
        return self.head(self.features(x)).view(-1, self.slots, self.classes)


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block written with plain ops, so it exports to any ONNX opset the
    runtime reads (torch's fused encoder layer takes a fast path the legacy exporter mishandles)."""

    def __init__(self, d: int, heads: int, dropout: float = 0.1):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = torch.softmax(q @ k.transpose(-1, -2) * (d // self.heads) ** -0.5, dim=-1)
        x = x + self.drop(self.out((a @ v).transpose(1, 2).reshape(n, t, d)))
        return x + self.drop(self.ff(self.norm2(x)))


class PlateOcrAttnNet(nn.Module):
    """Slot reader whose slots are learned query tokens read out by self-attention over the plate.

    The dense slot head gives every slot its own classifier over the whole map, so each slot must
    learn every character at every position it may hold: on a few hundred real US crops it
    memorised them (99 % train, 31 % dev). Here one classifier serves all slots and attention
    finds where each character sits, as ViTSTR does; the output is the same [N, slots, classes]."""

    def __init__(self, slots: int = 10, classes: int = 37, height: int = 64, width: int = 128,
                 d: int = 96, layers: int = 2, heads: int = 4):
        super().__init__()
        self.slots, self.classes = slots, classes
        self.features = slot_features()
        tokens = (height // 16) * (width // 8)  # the backbone's map, one token a cell
        self.embed = nn.Linear(64, d)
        self.pos = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        self.queries = nn.Parameter(torch.randn(1, slots, d) * 0.02)
        self.blocks = nn.Sequential(*[SelfAttentionBlock(d, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N,1,H,W] grey 0..255 -> logits [N, slots, classes]."""
        x = x / 127.5 - 1.0
        f = self.embed(self.features(x).flatten(2).transpose(1, 2)) + self.pos
        t = torch.cat([self.queries.expand(f.shape[0], -1, -1), f], 1)
        return self.head(self.norm(self.blocks(t)[:, : self.slots]))


class PlateOcrExport(nn.Module):
    """What is exported: probabilities, so the runtime needs no softmax of its own."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=-1)


class PlateDetectorNet(nn.Module):
    """CenterNet-style single-class detector with a small feature pyramid, output stride 4.

    Stride 4 keeps plates of ~12 px width (40 px in a 1080p frame seen at 640 px) on several
    heatmap cells, which anchor-based heads at stride 8+ miss."""

    stride = 4

    def __init__(self, width: int = 1):
        super().__init__()
        c = [16, 32, 48, 80, 112, 128]
        self.s2 = conv(3, c[0], 2)
        self.s4 = nn.Sequential(conv(c[0], c[1], 2), conv(c[1], c[1]))
        self.s8 = nn.Sequential(conv(c[1], c[2], 2), conv(c[2], c[2]))
        self.s16 = nn.Sequential(conv(c[2], c[3], 2), conv(c[3], c[3]))
        self.s32 = nn.Sequential(conv(c[3], c[4], 2), conv(c[4], c[5]))
        n = 48
        self.lat32 = nn.Conv2d(c[5], n, 1)
        self.lat16 = nn.Conv2d(c[3], n, 1)
        self.lat8 = nn.Conv2d(c[2], n, 1)
        self.lat4 = nn.Conv2d(c[1], n, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.smooth8 = conv(n, n)
        self.smooth4 = conv(n, 32)
        self.heat = nn.Conv2d(32, 1, 1)
        self.size = nn.Conv2d(32, 2, 1)
        self.offset = nn.Conv2d(32, 2, 1)
        nn.init.constant_(self.heat.bias, -4.6)  # start near p=0.01: most cells are background

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [N,3,H,W] BGR 0..255 with H, W multiples of 32 -> heat logits, log size, offset."""
        x = x / 127.5 - 1.0
        f4 = self.s4(self.s2(x))
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        p = self.lat32(f32)
        p = self.up(p) + self.lat16(f16)
        p = self.smooth8(self.up(p) + self.lat8(f8))
        p = self.smooth4(self.up(p) + self.lat4(f4))
        return self.heat(p), self.size(p), self.offset(p)


class PlateDetectorExport(nn.Module):
    def __init__(self, net: PlateDetectorNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        heat, size, offset = self.net(x)
        return torch.sigmoid(heat), size, torch.sigmoid(offset)


class PlateVerifierNet(nn.Module):
    """Is this box a plate? A second opinion on the detector's unsure boxes, from the box's own
    pixels at 96x48 (verifier_input): the detector sees a small plate at a third of its size."""

    def __init__(self, width: int = 96, height: int = 48):
        super().__init__()
        self.features = nn.Sequential(conv(3, 16, 2), conv(16, 32, 2), conv(32, 32), conv(32, 64, 2), conv(64, 64),
                                      conv(64, 96, 2))
        # Flattened rather than pooled: where in the window the lettering sits is part of the answer.
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(96 * (height // 16) * (width // 16), 64),
                                  nn.ReLU(inplace=True), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N,3,H,W] BGR 0..255 -> logit [N]."""
        return self.head(self.features(x / 127.5 - 1.0))[:, 0]


class PlateVerifierExport(nn.Module):
    def __init__(self, net: PlateVerifierNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))
