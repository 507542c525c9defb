"""Losses of meta-learning and fine-tuning (Zakharov et al. 2019, section 3.2).

- content: L1, plus perceptual terms on VGG19 (ImageNet) and VGGFace activations when a
  local weights file is given (no hub is reachable, so nothing is downloaded);
- adversarial: hinge, for G and for D;
- feature matching on D's intermediate features;
- embedding match between D's per-video vector W_i and the embedder's e_i.

Images are (B, 3, S, S) float32 in [-1, 1], RGB.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from talkinghead.errors import CheckpointError, InvalidInputError
from talkinghead.models.checkpoint import read_state_dict

log = logging.getLogger(__name__)

# Convolution widths per stage ("M" = 2x2 max pooling), the configurations of VGG16 ("D",
# the VGGFace network) and VGG19 ("E", the ImageNet network).
VGG_LAYOUTS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}  # fmt: skip
# Indices (into ``features``) of the activations compared: relu1_1 ... relu5_1.
VGG_TAPS = {"vgg16": (1, 6, 11, 18, 25), "vgg19": (1, 6, 11, 20, 29)}

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)  # 0-1 scale
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# VGGFace's training-set mean colour, 0-255 scale, given per R, G, B. Faces are reddish, so
# R is the largest; the network takes BGR input, so it is subtracted as (B, G, R).
VGGFACE_MEAN_RGB = (129.186279296875, 104.76238250732422, 93.59396362304688)


# --- adversarial, feature matching, embedding match -------------------------------------


def hinge_d(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """D's hinge loss: scores (B,) of real and generated images."""
    return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()


def hinge_g(fake_scores: torch.Tensor) -> torch.Tensor:
    """G's hinge (adversarial) loss: minus the realism score of its images (B,)."""
    return -fake_scores.mean()


def feature_matching(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 between D's features of generated and real images (real side held fixed)."""
    if not fake or len(fake) != len(real):
        raise InvalidInputError(f"feature lists differ: {len(fake)} vs {len(real)}")
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake, real, strict=True)) / len(fake)


def embedding_match(w: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """L1 between D's per-video vectors W_i and the embedder's e_i, both (B, e_dim)."""
    return F.l1_loss(w, e)


# --- VGG perceptual terms ---------------------------------------------------------------


class VGGFeatures(nn.Module):
    """The convolutional part of VGG16/19, laid out index for index like the common
    ``features`` stack, so that its state dict (``features.<i>.weight``) loads unchanged."""

    def __init__(self, arch: str):
        super().__init__()
        if arch not in VGG_LAYOUTS:
            raise InvalidInputError(f"unknown VGG layout {arch!r}; choose from {list(VGG_LAYOUTS)}")
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG_LAYOUTS[arch]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(v)
        self.arch = arch
        self.features = nn.Sequential(*layers)
        self.taps = VGG_TAPS[arch]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Preprocessed images (B, 3, H, W) -> activations at ``taps``."""
        out = []
        for i, layer in enumerate(self.features[: self.taps[-1] + 1]):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def load_vgg(path: str | Path, arch: str) -> VGGFeatures:
    """A frozen VGG16/19 ``features`` stack from a local safetensors or torch file.

    Accepts ``features.<i>.weight`` keys (the full classification network's state dict;
    the classifier is ignored), bare ``<i>.weight`` keys, or ``conv<stage>_<n>.weight``
    names (Caffe conversions), which are matched to the convolutions in order.
    """
    net = VGGFeatures(arch)
    state = read_state_dict(path, "VGG weights")
    want = net.state_dict()
    mapped = {k: v for k, v in state.items() if k in want}
    if not mapped:
        mapped = {f"features.{k}": v for k, v in state.items() if f"features.{k}" in want}
    if not mapped:
        named: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
        for k, v in state.items():
            if m := re.fullmatch(r"(?:.*\.)?conv(\d)_(\d)\.(weight|bias)", k):
                named.setdefault((int(m[1]), int(m[2])), {})[m[3]] = v
        convs = [k.removesuffix(".weight") for k in want if k.endswith(".weight")]
        for conv_name, key in zip(convs, sorted(named), strict=False):
            mapped.update({f"{conv_name}.{kind}": v for kind, v in named[key].items()})
    try:
        net.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the {arch} feature stack: {exc}") from exc
    return net.eval().requires_grad_(False)


def imagenet_input(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] RGB -> the ImageNet VGG19 input: RGB in 0-1, minus mean, over std."""
    mean = x.new_tensor(IMAGENET_MEAN_RGB)[:, None, None]
    std = x.new_tensor(IMAGENET_STD_RGB)[:, None, None]
    return ((x + 1) / 2 - mean) / std


def vggface_input(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] RGB -> the VGGFace (Caffe) input: BGR, 0-255, minus the per-channel mean."""
    bgr = (x.flip(1) + 1) * 127.5
    return bgr - x.new_tensor(VGGFACE_MEAN_RGB[::-1])[:, None, None]


@dataclass
class ContentConfig:
    """Weights of the content terms and where the VGG weights are (None: not used)."""

    w_l1: float = 10.0
    w_vgg19: float = 1.5e-1
    w_vggface: float = 2.5e-2
    vgg19_weights: str | None = None  # VGG19 ImageNet classifier state dict
    vggface_weights: str | None = None  # VGGFace (VGG16 layout) state dict


class ContentLoss:
    """L1 plus the VGG19 and VGGFace perceptual terms whose weights files are given.

    A plain callable, not a module: the frozen VGGs stay out of the trained parameters
    (and out of any DistributedDataParallel wrapper).
    """

    def __init__(self, cfg: ContentConfig | None = None):
        self.cfg = cfg = cfg or ContentConfig()
        self.nets: dict[str, tuple[VGGFeatures, float, object]] = {}
        if cfg.vgg19_weights:
            self.nets["vgg19"] = (load_vgg(cfg.vgg19_weights, "vgg19"), cfg.w_vgg19, imagenet_input)
        if cfg.vggface_weights:
            net = load_vgg(cfg.vggface_weights, "vgg16")
            self.nets["vggface"] = (net, cfg.w_vggface, vggface_input)
        log.info("content loss: %s", self.describe())

    def describe(self) -> str:
        if not self.nets:
            return "L1 only (no VGG19/VGGFace weights file given), plus feature matching on D"
        return "L1 + perceptual " + " + ".join(self.nets)

    def to(self, device: torch.device | str) -> ContentLoss:
        self.nets = {k: (net.to(device), w, f) for k, (net, w, f) in self.nets.items()}
        return self

    def __call__(
        self, fake: torch.Tensor, real: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted content loss of fake vs real (B, 3, S, S) and its terms by name."""
        l1 = F.l1_loss(fake, real)
        loss, parts = self.cfg.w_l1 * l1, {"l1": l1.item()}
        for name, (net, weight, prep) in self.nets.items():
            with torch.no_grad():
                target = net(prep(real))
            term = sum(F.l1_loss(a, b) for a, b in zip(net(prep(fake)), target, strict=True))
            loss = loss + weight * term
            parts[name] = float(term)
        return loss, parts
