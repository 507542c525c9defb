"""InceptionV3 pool3 features (2048-d) for FID, from a local weights file.

The network is InceptionV3 (Szegedy et al. 2016) with the module and parameter names of
the common PyTorch layout, so an existing state dict loads unchanged. It is written out
here because the torchvision wheel reachable from these machines is built for CUDA and
does not import against the CPU torch build. Nothing is downloaded: the weights come from
a file the caller names.

Two conventions, chosen with ``convention=``:

- ``"fid"`` (default): the 2015-12-05 TensorFlow Inception that FID figures in the
  literature are computed with, as ported to PyTorch. Its branch-pool average pools
  exclude the zero padding (``count_include_pad=False``) in the A, C and first E blocks
  (``Mixed_5b``-``5d``, ``Mixed_6b``-``6e``, ``Mixed_7b``); the last E block
  (``Mixed_7c``) max-pools instead; ``fc`` has 1008 logits. Input: RGB resized
  bilinearly to 299 x 299 and scaled to [-1, 1].
- ``"torchvision"``: the ImageNet classifier as trained in PyTorch. Every branch-pool is
  an average pool counting the padding; ``fc`` has 1000 logits. Input: RGB resized
  bilinearly to 299 x 299, in [0, 1], minus the ImageNet mean, over its std.

FID scores are only comparable between runs that use the same convention and weights.

Weights file: safetensors, or a ``.pth``/``.pt`` tensor dict read with
``torch.load(weights_only=True)`` (no other pickle is loaded). Keys, all float32 or
float16:

- ``<conv>.conv.weight`` and ``<conv>.bn.{weight,bias,running_mean,running_var}`` for
  every convolution (the stem ``Conv2d_1a_3x3`` ... ``Conv2d_4a_3x3``, and the branches
  of ``Mixed_5b`` ... ``Mixed_7c``, e.g. ``Mixed_6b.branch7x7_2.conv.weight``);
- ``fc.weight`` (1008 or 1000, 2048) and ``fc.bias``;
- optional: ``*.bn.num_batches_tracked``, and ``AuxLogits.*`` (ignored).

A missing, truncated or corrupt file, or one with missing, extra or misshapen tensors,
raises :class:`CheckpointError` naming the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from talkinghead.errors import CheckpointError, InvalidInputError
from talkinghead.models.checkpoint import read_state_dict
from talkinghead.train.losses import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB

CONVENTIONS = ("fid", "torchvision")
INPUT_PX = 299
POOL3_DIM = 2048
NUM_LOGITS = {"fid": 1008, "torchvision": 1000}

# Branch-pool kinds: 3x3, stride 1, padding 1, so the spatial size is kept.
_POOLS = {
    "avg": lambda x: F.avg_pool2d(x, 3, 1, 1),
    "avg-exclude-pad": lambda x: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False),
    "max": lambda x: F.max_pool2d(x, 3, 1, 1),
}


class ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class _PooledBlock(nn.Module):
    """A block whose ``branch_pool`` convolution reads a 3x3 pool of the input."""

    def __init__(self, pool: str):
        super().__init__()
        self.pool = pool

    def pool_input(self, x: torch.Tensor) -> torch.Tensor:
        return _POOLS[self.pool](x)


class InceptionA(_PooledBlock):
    """35 x 35: 1x1, 5x5, double 3x3 and pool branches (Mixed_5b-5d)."""

    def __init__(self, cin: int, pool_features: int, pool: str):
        super().__init__(pool)
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(self.pool_input(x))], 1)


class InceptionB(nn.Module):
    """35 -> 17 reduction (Mixed_6a)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, 2)], 1)


class InceptionC(_PooledBlock):
    """17 x 17: factorised 7x7 branches (Mixed_6b-6e)."""

    def __init__(self, cin: int, c7: int, pool: str):
        super().__init__(pool)
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(self.pool_input(x))], 1)


class InceptionD(nn.Module):
    """17 -> 8 reduction (Mixed_7a)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, 2)], 1)


class InceptionE(_PooledBlock):
    """8 x 8: expanded 1x3 / 3x1 branches (Mixed_7b, 7c)."""

    def __init__(self, cin: int, pool: str):
        super().__init__(pool)
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(self.pool_input(x))], 1)


class InceptionV3(nn.Module):
    """InceptionV3 without the auxiliary classifier; see the module docstring for the
    two ``convention`` values. ``pool3``: (B, 3, 299, 299) preprocessed -> (B, 2048)."""

    def __init__(self, convention: str = "fid"):
        super().__init__()
        if convention not in CONVENTIONS:
            raise InvalidInputError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        self.convention = convention
        avg = "avg-exclude-pad" if convention == "fid" else "avg"
        last = "max" if convention == "fid" else "avg"
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32, avg)
        self.Mixed_5c = InceptionA(256, 64, avg)
        self.Mixed_5d = InceptionA(288, 64, avg)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128, avg)
        self.Mixed_6c = InceptionC(768, 160, avg)
        self.Mixed_6d = InceptionC(768, 160, avg)
        self.Mixed_6e = InceptionC(768, 192, avg)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, avg)
        self.Mixed_7c = InceptionE(2048, last)
        self.fc = nn.Linear(POOL3_DIM, NUM_LOGITS[convention])

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB -> (B, 3, 299, 299) float32 network input."""
        x = images.permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=(INPUT_PX, INPUT_PX), mode="bilinear", align_corners=False)
        if self.convention == "fid":
            return x * 2 - 1
        mean = x.new_tensor(IMAGENET_MEAN_RGB)[:, None, None]
        return (x - mean) / x.new_tensor(IMAGENET_STD_RGB)[:, None, None]

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2)))
        x = F.max_pool2d(x, 3, 2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed (B, 3, 299, 299) -> logits (B, 1008 or 1000)."""
        return self.fc(self.pool3(x))


def load_inception(path: str | Path, convention: str = "fid") -> InceptionV3:
    """A frozen InceptionV3 from a local weights file (layout in the module docstring).

    Raises:
        InvalidInputError: unknown ``convention``.
        CheckpointError: the file is missing, unreadable, or does not fit the network.
    """
    with torch.device("meta"):  # shapes only: the weights come from the file
        net = InceptionV3(convention)
    state = read_state_dict(path, "Inception weights")
    state = {k: v for k, v in state.items() if not str(k).startswith("AuxLogits.")}
    want = net.state_dict()
    missing = [k for k in want if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in want]
    if missing or unexpected:
        raise CheckpointError(
            f"Inception weights {path} do not fit InceptionV3: {len(missing)} missing "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}"
        )
    for k, v in state.items():
        if not isinstance(v, torch.Tensor) or v.shape != want[k].shape:
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            hint = f" (the {convention!r} convention has {NUM_LOGITS[convention]} logits)"
            raise CheckpointError(
                f"Inception weights {path}: {k} is {got}, expected {tuple(want[k].shape)}"
                + (hint if k.startswith("fc.") else "")
            )
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"Inception weights {path}: {k} holds NaN or inf")
    full = {
        k: state[k].to(w.dtype) if k in state else torch.zeros((), dtype=w.dtype)
        for k, w in want.items()
    }
    net.to_empty(device="cpu").load_state_dict(full)
    return net.eval().requires_grad_(False)


def inception_features(
    net: InceptionV3, images: np.ndarray, batch_size: int = 16, progress: bool = True
) -> np.ndarray:
    """Pool3 features of (N, H, W, 3) uint8 RGB images -> (N, 2048) float64.

    Batches go to the network's device, so ``net.to("cuda")`` runs it on a GPU.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        got = getattr(images, "dtype", type(images).__name__)
        raise InvalidInputError(f"images must be a uint8 numpy array, got {got}")
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise InvalidInputError(f"images must be (N>=1, H, W, 3) RGB, got {images.shape}")
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
    out = []
    device = next(net.parameters()).device
    starts = range(0, len(images), batch_size)
    with torch.no_grad():
        for i in tqdm(starts, desc="inception", disable=not progress or len(starts) < 2):
            batch = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size]))
            out.append(net.pool3(net.preprocess(batch.to(device))).double().cpu().numpy())
    return np.concatenate(out)
