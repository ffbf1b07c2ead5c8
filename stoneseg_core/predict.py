"""Segmenting photos of any size with a trained model.

A photo is brought to the model's working scale, cut into overlapping tiles padded to the
network's multiple of 32, predicted in small batches, blended with a weight that falls off
towards each tile's edge (so no seams), and the probability is resized back to the photo's
own size. Memory stays bounded: the full-size photo is only ever held as uint8 and the
probability as one float32 plane (two for a model trained with the boundary target: channel
0 is always the stone probability, channel 1 the stone-boundary probability).
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import InferenceConfig
from .dataset import normalize, to_work_scale
from .device import autocast, autocast_dtype, resolve_device
from .errors import ImageReadError, OutOfMemoryError, StonesegError
from .imageio import list_images, read_image, write_mask
from .model import ModelInfo, load_model

log = logging.getLogger(__name__)

MULTIPLE = 32


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``length`` with tiles of ``tile`` that overlap by >= ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """2-D weight that ramps from near 0 at a tile's border to 1 inside ``overlap`` pixels."""
    if overlap <= 0:
        return np.ones((tile, tile), np.float32)
    ramp = np.ones(tile, np.float32)
    edge = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    ramp[:overlap] = edge
    ramp[-overlap:] = edge[::-1]
    return np.outer(ramp, ramp)


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h == height and w == width:
        return image
    mode = cv2.BORDER_REFLECT_101 if h > 1 and w > 1 else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, mode)


def _round_up(x: int, m: int = MULTIPLE) -> int:
    return -(-x // m) * m


# --------------------------------------------------------------------- fused CPU inference
#
# On the CPU the U-Net's time goes to its convolutions and to the passes over memory between
# them: every BatchNorm, SiLU/ReLU and residual add reads and writes a whole activation
# tensor, and eager PyTorch reorders each convolution's weights into oneDNN's blocked layout
# on every call. For inference each BatchNorm is folded into its convolution, the activation
# or residual add that follows runs inside the convolution as a oneDNN post-op, the weights
# are reordered once per input shape, and the decoder's "upsample 2x, then 3x3 conv" runs
# as four 2x2 convolutions at the low resolution (see _FusedUpBlock). It is the same
# float32 network (logits differ by ~1e-5). On the 2-core AVX2 EPYC, network only, 512x384:
# 1.7x faster than channels_last eager, 1.9x faster than plain NCHW eager, and far less
# slowed down when another process shares the cores (tests/benchmarks/bench_inference.py).
# Layers it does not recognise run as they were.


def _fusion_available() -> bool:
    mk = getattr(torch.ops, "mkldnn", None)
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(mk, "_convolution_pointwise")
        and hasattr(mk, "_reorder_convolution_weight")
    )


PACKED_SHAPES = 4  # the input shapes whose reordered weights each fused convolution keeps


class _FusedConv(nn.Module):
    """A convolution run by oneDNN with its BatchNorm folded in and a post-op.

    ``activation``: "none", "relu" or "swish". ``forward(x, residual)`` adds ``residual``
    to the convolution's output before the activation, in the same pass.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        padding: list[int],
        stride: list[int],
        activation: str,
        groups: int = 1,
        dilation: list[int] | None = None,
        pre_pad: tuple[int, int, int, int] | None = None,
    ):
        super().__init__()
        self.weight = weight.detach().contiguous(memory_format=torch.channels_last)
        self.bias = bias.detach() if bias is not None else torch.zeros(weight.shape[0])
        self.padding, self.stride, self.groups = list(padding), list(stride), groups
        self.dilation = list(dilation or [1, 1])
        self.pre_pad = pre_pad
        self.activation = activation
        self._packed: dict[tuple[int, ...], torch.Tensor] = {}

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, activation: str) -> _FusedConv:
        weight, bias = _folded(conv, bn)
        padding, pre_pad = list(conv.padding), None
        pad = getattr(conv, "static_padding", None)  # efficientnet's TensorFlow-style "same"
        if isinstance(pad, nn.ZeroPad2d):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom and padding == [0, 0]:
                padding = [top, left]  # symmetric: the convolution pads, no extra copy
            else:
                pre_pad = (left, right, top, bottom)
        return cls(
            weight,
            bias,
            padding,
            list(conv.stride),
            activation,
            conv.groups,
            list(conv.dilation),
            pre_pad,
        )

    @staticmethod
    def supports(conv: nn.Module) -> bool:
        """A plain zero-padded Conv2d, or efficientnet's conv with a fixed "same" padding."""
        static = type(conv).__name__ == "Conv2dStaticSamePadding"
        pad = getattr(conv, "static_padding", None)
        return (
            isinstance(conv, nn.Conv2d)
            and (type(conv) is nn.Conv2d or static)
            and isinstance(conv.padding, tuple)
            and conv.padding_mode == "zeros"
            and (not static or isinstance(pad, (nn.ZeroPad2d, nn.Identity)))
        )

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        mk = torch.ops.mkldnn
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        shape = tuple(x.shape)
        packed = self._packed.get(shape)
        if packed is None:
            # oneDNN's layout for the weights depends on the input's shape: reorder once per
            # shape (tiles, or a folder of same-size photos, keep one) and keep the last few
            if len(self._packed) >= PACKED_SHAPES:
                self._packed.pop(next(iter(self._packed)))
            packed = mk._reorder_convolution_weight(
                self.weight, self.padding, self.stride, self.dilation, self.groups, list(shape)
            )
            self._packed[shape] = packed
        args = (packed, self.bias, self.padding, self.stride, self.dilation, self.groups)
        if residual is not None:
            unary = None if self.activation == "none" else self.activation
            return mk._convolution_pointwise.binary(
                x, residual, *args, "add", None, unary, [], None
            )
        return mk._convolution_pointwise(x, *args, self.activation, [], "")


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    weight = conv.weight.detach()
    bias = conv.bias.detach() if conv.bias is not None else None
    if bn is None:
        return weight, bias
    weight, bias = torch.nn.utils.fusion.fuse_conv_bn_weights(
        weight, bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    return weight.detach(), bias.detach()


def _conv_bn_relu(seq: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d | None] | None:
    """(conv, BatchNorm or nothing) of an SMP Conv2dReLU (conv, norm, ReLU), else None."""
    if not isinstance(seq, nn.Sequential) or len(seq) != 3 or type(seq[2]) is not nn.ReLU:
        return None
    conv, norm = seq[0], seq[1]
    if type(conv) is not nn.Conv2d or not _FusedConv.supports(conv):
        return None
    if type(norm) is nn.BatchNorm2d:
        return conv, norm
    return (conv, None) if isinstance(norm, nn.Identity) else None


# Nearest 2x upsampling then a 3x3 convolution: each of the four output phases (even/odd
# row, even/odd column) only ever sees two distinct input rows and two input columns, so it
# is a 2x2 convolution of the small input with summed taps. All four phases are one 2x2
# convolution with 4x the output channels, interleaved afterwards: 16 instead of 36
# multiply-adds per output channel and pixel, and no upsampled copy or concatenation.
_PHASE_TAPS = (
    torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]),  # even output row/column: taps (-1 | 0, +1)
    torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),  # odd: taps (-1, 0 | +1)
)
_PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


class _FusedUpBlock(nn.Module):
    """SMP's U-Net decoder block (nearest 2x up, concat skip, conv-BN-ReLU twice), fused."""

    def __init__(self, block: nn.Module):
        super().__init__()
        conv1, bn1 = _conv_bn_relu(block.conv1)
        conv2, bn2 = _conv_bn_relu(block.conv2)
        self.weight1, self.bias1 = _folded(conv1, bn1)
        self.conv1 = _FusedConv.from_conv(conv1, bn1, "relu")  # for sizes that are not 2x
        self.conv2 = _FusedConv.from_conv(conv2, bn2, "relu")
        self._phase: tuple[int, _FusedConv, _FusedConv | None] | None = None

    @staticmethod
    def supports(block: nn.Module) -> bool:
        names = ("conv1", "conv2", "attention1", "attention2", "interpolation_mode")
        if type(block).__name__ != "UnetDecoderBlock" or not all(hasattr(block, n) for n in names):
            return False
        plain = lambda a: isinstance(getattr(a, "attention", None), nn.Identity)  # noqa: E731
        convs = [_conv_bn_relu(block.conv1), _conv_bn_relu(block.conv2)]
        return (
            block.interpolation_mode == "nearest"
            and plain(block.attention1)
            and plain(block.attention2)
            and all(
                c is not None and c[0].kernel_size == (3, 3) and c[0].padding == (1, 1)
                for c in convs
            )
            and all(
                c[0].stride == (1, 1) and c[0].dilation == (1, 1) and c[0].groups == 1
                for c in convs
            )
        )

    def _phase_convs(self, up_channels: int) -> tuple[_FusedConv, _FusedConv | None]:
        if self._phase is None or self._phase[0] != up_channels:
            w_up, w_skip = self.weight1[:, :up_channels], self.weight1[:, up_channels:]
            kernels = [
                torch.einsum("ty,ocyx,ux->octu", _PHASE_TAPS[a], w_up, _PHASE_TAPS[b])
                for a, b in _PHASES
            ]
            has_skip = w_skip.shape[1] > 0
            bias = None if has_skip else (self.bias1.repeat(4) if self.bias1 is not None else None)
            up = _FusedConv(
                torch.cat(kernels), bias, [1, 1], [1, 1], "none" if has_skip else "relu"
            )
            skip = _FusedConv(w_skip, self.bias1, [1, 1], [1, 1], "relu") if has_skip else None
            self._phase = (up_channels, up, skip)
        return self._phase[1], self._phase[2]

    def forward(
        self,
        x: torch.Tensor,
        target_height: int,
        target_width: int,
        skip_connection: torch.Tensor | None = None,
    ) -> torch.Tensor:
        n, c, h, w = x.shape
        skip_ok = skip_connection is None or skip_connection.shape[-2:] == (2 * h, 2 * w)
        if (target_height, target_width) != (2 * h, 2 * w) or not skip_ok:
            x = F.interpolate(x, size=(target_height, target_width), mode="nearest")
            if skip_connection is not None:
                x = torch.cat([x, skip_connection], dim=1)
            return self.conv2(self.conv1(x))
        up, skip = self._phase_convs(c)
        phases = up(x)  # (n, 4 * out, h + 1, w + 1)
        out = self.weight1.shape[0]
        y = torch.empty((n, out, 2 * h, 2 * w), dtype=x.dtype, memory_format=torch.channels_last)
        for k, (a, b) in enumerate(_PHASES):
            y[:, :, a::2, b::2] = phases[:, k * out : (k + 1) * out, a : a + h, b : b + w]
        if skip is not None:
            y = skip(skip_connection, y)  # relu(conv(skip) + bias + upsampled part), one pass
        return self.conv2(y)


class _FusedMBConv(nn.Module):
    """efficientnet's MBConv block (expand, depthwise, squeeze-excite, project, skip), fused."""

    def __init__(self, block: nn.Module):
        super().__init__()
        expand = block._has_expansion
        self.expand = (
            _FusedConv.from_conv(block._expand_conv, block._bn0, "swish") if expand else None
        )
        self.depthwise = _FusedConv.from_conv(block._depthwise_conv, block._bn1, "swish")
        self.se = None
        if block._has_se:
            r, e = block._se_reduce, block._se_expand
            self.se = (
                r.weight.detach().flatten(1),
                r.bias.detach(),
                e.weight.detach().flatten(1),
                e.bias.detach(),
            )
        self.project = _FusedConv.from_conv(block._project_conv, block._bn2, "none")
        self.skip = bool(block._has_drop_connect)  # drop-connect itself is off in eval mode

    def forward(self, inputs: torch.Tensor, drop_connect_rate: float | None = None) -> torch.Tensor:
        x = self.expand(inputs) if self.expand is not None else inputs
        x = self.depthwise(x)
        if self.se is not None:
            w1, b1, w2, b2 = self.se
            s = F.silu(F.linear(x.mean((2, 3)), w1, b1))
            x = x * torch.sigmoid(F.linear(s, w2, b2))[:, :, None, None]
        return self.project(x, inputs if self.skip else None)


def _is_mbconv(m: nn.Module) -> bool:
    names = (
        "_expand_conv",
        "_bn0",
        "_depthwise_conv",
        "_bn1",
        "_project_conv",
        "_bn2",
        "_has_se",
        "_has_drop_connect",
    )
    if not all(hasattr(m, n) for n in names) or type(m).__name__ != "MBConvBlock":
        return False
    convs = [m._depthwise_conv, m._project_conv] + ([m._expand_conv] if m._has_expansion else [])
    bns = [m._bn1, m._bn2] + ([m._bn0] if m._has_expansion else [])
    return all(_FusedConv.supports(c) for c in convs) and all(
        type(b) is nn.BatchNorm2d for b in bns
    )


def _fuse_children(module: nn.Module, decoder_phases: bool = True) -> int:
    """Replace the patterns this file knows, in place; returns how many convolutions were fused."""
    fused = 0
    if (
        hasattr(module, "_conv_stem")
        and type(getattr(module, "_bn0", None)) is nn.BatchNorm2d
        and isinstance(getattr(module, "_swish", None), nn.SiLU)
        and _FusedConv.supports(module._conv_stem)
    ):
        module._conv_stem = _FusedConv.from_conv(module._conv_stem, module._bn0, "swish")
        module._bn0, module._swish = nn.Identity(), nn.Identity()
        fused += 1
    if isinstance(module, nn.Sequential) and len(module) and _FusedConv.supports(module[0]):
        # (conv, BatchNorm?, ReLU?, ...): SMP's Conv2dReLU, the segmentation head, and the like
        items = list(module)
        bn = items[1] if len(items) > 1 and type(items[1]) is nn.BatchNorm2d else None
        after = 1 if bn is None else 2
        relu = len(items) > after and type(items[after]) is nn.ReLU
        module[0] = _FusedConv.from_conv(items[0], bn, "relu" if relu else "none")
        if bn is not None:
            module[1] = nn.Identity()
        if relu:
            module[after] = nn.Identity()
        fused += 1
    for name, child in list(module.named_children()):
        if _is_mbconv(child):
            setattr(module, name, _FusedMBConv(child))
            fused += 3 if child._has_expansion else 2
        elif decoder_phases and _FusedUpBlock.supports(child):
            setattr(module, name, _FusedUpBlock(child))
            fused += 2
        else:
            fused += _fuse_children(child, decoder_phases)
    return fused


def _weights_version(model: nn.Module) -> int:
    """Grows whenever a weight or BatchNorm statistic is changed in place (training, loading)."""
    return sum(t._version for t in model.parameters()) + sum(t._version for t in model.buffers())


def fuse_for_cpu_inference(model: nn.Module, decoder_phases: bool = True) -> nn.Module | None:
    """A fused copy of ``model`` for float32 CPU inference, checked against it; None if unsupported.

    ``decoder_phases``: run the U-Net decoder's upsample + 3x3 convolution as four 2x2 phases.
    """
    if not _fusion_available():
        return None
    was_training = model.training
    try:
        with torch.inference_mode(False), torch.no_grad():
            model.eval()
            # a copy of the module tree that shares the model's tensors: the layers that are
            # fused get new (folded) weights, the others read the model's own, unchanged
            shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
            net = copy.deepcopy(model, memo=shared)
            if _fuse_children(net, decoder_phases) == 0:
                return None
            # one check that the fused network computes what the model does; small, because
            # it costs a full pass of every layer
            probe = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
            probe = probe.contiguous(memory_format=torch.channels_last)
            ref, out = model(probe), net(probe)
            for m in net.modules():  # weights packed for the probe's shape: of no use later
                if isinstance(m, _FusedConv):
                    m._packed.clear()
                elif isinstance(m, _FusedUpBlock):
                    m._phase = None
        err = float((ref - out).abs().max())
        if not err <= 1e-3 * (1.0 + float(ref.abs().max())):
            log.warning(
                "Fused CPU network disagrees with the model (max diff %.3g); using the model as is.",
                err,
            )
            return None
        return net
    except Exception as exc:  # noqa: BLE001 - an unknown layer or an older oneDNN: run the model as is
        log.info("CPU fusion not used: %s: %s", type(exc).__name__, exc)
        return None
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class Prediction:
    probability: np.ndarray  # float32 (H, W) in [0, 1] at the photo's own size: stone
    mask: np.ndarray  # uint8 0/255 (H, W)
    # float32 (H, W) in [0, 1]: the stone-boundary probability, for a model trained with
    # the "mask+boundary" target; None for a 1-channel model
    boundary: np.ndarray | None = None


class Segmenter:
    """A loaded model plus how to run it. Reuse one for many photos."""

    def __init__(
        self, model: nn.Module, info: ModelInfo, config: InferenceConfig | None = None, device=None
    ):
        self.config = config or InferenceConfig(threshold=info.threshold)
        self.device = resolve_device(self.config.device) if device is None else torch.device(device)
        self.dtype = autocast_dtype(self.device, self.config.amp)
        self.info = info
        self.model = model.to(self.device).eval()
        # channels_last made fp32 CPU inference 1.2-1.7x faster here (oneDNN kernels); on a
        # GPU it pays only with reduced precision (tensor-core layouts)
        self.channels_last = self.device.type == "cpu" or self.dtype is not None
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # float32 on the CPU: a fused copy of the network (see fuse_for_cpu_inference), made
        # at the second pass and again whenever the model's weights have changed since
        self.fuse_on_cpu = self.device.type == "cpu" and self.dtype is None
        self._fused: nn.Module | None = None
        self._fused_version = self._seen_version = -1

    @classmethod
    def load(cls, folder: str | Path, config: InferenceConfig | None = None) -> Segmenter:
        cfg = config or InferenceConfig()
        device = resolve_device(cfg.device)
        model, info = load_model(folder, device)
        if config is None:
            cfg = cfg.replace(threshold=info.threshold)
        return cls(model, info, cfg, device)

    # ----------------------------------------------------------------------------- core
    def _network(self) -> nn.Module:
        if not self.fuse_on_cpu:
            return self.model
        version = _weights_version(self.model)
        if version != self._fused_version:
            if version != self._seen_version:
                # the first pass with these weights runs the model as is: fusing costs about
                # one pass, which a one-off prediction would not earn back
                self._seen_version = version
                return self.model
            self._fused = fuse_for_cpu_inference(self.model)
            self._fused_version = version
        return self._fused if self._fused is not None else self.model

    @property
    def classes(self) -> int:
        """Output channels of the model: 1 (stone) or 2 (stone, boundary)."""
        return self.info.classes

    def _forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised float32 on the device -> (N, C, H, W) probabilities there."""
        net = self._network()
        with torch.inference_mode():
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            views = [((), ())]
            if self.config.tta:
                views = [((), ()), ((3,), (3,)), ((2,), (2,)), ((2, 3), (2, 3))]
            total = None
            with autocast(self.device, self.dtype):
                for fwd, back in views:
                    xi = torch.flip(x, fwd) if fwd else x
                    prob = torch.sigmoid(net(xi).float())
                    prob = torch.flip(prob, back) if back else prob
                    total = prob if total is None else total + prob
            return total / len(views)

    def probability_at_work_scale(
        self, work: np.ndarray, should_stop: Callable[[], bool] | None = None
    ) -> np.ndarray:
        """Stone probability (H, W) for an image already at working scale."""
        return self.probabilities_at_work_scale(work, should_stop)[0]

    def probabilities_at_work_scale(
        self, work: np.ndarray, should_stop: Callable[[], bool] | None = None
    ) -> np.ndarray:
        """Every output channel's probability (C, H, W) for an image already at working scale."""
        cfg = self.config
        h, w = work.shape[:2]
        tile = cfg.tile
        if h <= tile and w <= tile:
            # one pass over the whole image, padded to the network's multiple of 32
            ph, pw = _round_up(h), _round_up(w)
            x = normalize(_pad_to(work, ph, pw), self.info.mean, self.info.std)[None]
            return self._run_oom_safe(x)[0, :, :h, :w]
        ph, pw = max(h, tile), max(w, tile)
        padded = _pad_to(work, ph, pw)
        if self.device.type == "cuda":
            return self._tiles_on_device(padded, should_stop)[:, :h, :w]
        ys, xs = tile_starts(ph, tile, cfg.overlap), tile_starts(pw, tile, cfg.overlap)
        weight = blend_window(tile, cfg.overlap)
        acc = np.zeros((self.classes, ph, pw), np.float32)
        norm = np.zeros((ph, pw), np.float32)
        coords = [(y, x) for y in ys for x in xs]
        for i in range(0, len(coords), cfg.batch_tiles):
            if should_stop is not None and should_stop():
                raise StonesegError("Cancelled.")
            chunk = coords[i : i + cfg.batch_tiles]
            batch = np.stack(
                [
                    normalize(padded[y : y + tile, x : x + tile], self.info.mean, self.info.std)
                    for y, x in chunk
                ]
            )
            probs = self._run_oom_safe(batch)
            for (y, x), p in zip(chunk, probs):
                acc[:, y : y + tile, x : x + tile] += p * weight
                norm[y : y + tile, x : x + tile] += weight
        return (acc / np.maximum(norm, 1e-6))[:, :h, :w]

    def _tiles_on_device(
        self, padded: np.ndarray, should_stop: Callable[[], bool] | None
    ) -> np.ndarray:
        """The tiled pass with the photo, the tiles and the blending kept on the GPU.

        The photo goes up once (uint8, from pinned memory) and the probability comes down
        once, instead of a normalised float copy of every tile going up and its result
        coming down (64 small copies from pageable memory for a 24 MP photo).
        Returns (C, H, W).
        """
        cfg, dev, tile = self.config, self.device, self.config.tile
        ph, pw = padded.shape[:2]
        with torch.inference_mode():
            img = torch.from_numpy(padded)
            if dev.type == "cuda":
                img = img.pin_memory()
            img = img.to(dev, non_blocking=True)
            mean = torch.tensor(self.info.mean, dtype=torch.float32, device=dev).view(3, 1, 1)
            std = torch.tensor(self.info.std, dtype=torch.float32, device=dev).view(3, 1, 1)
            x = (img.permute(2, 0, 1).float() / 255.0 - mean) / std
            del img
            weight = torch.from_numpy(blend_window(tile, cfg.overlap)).to(dev)
            acc = torch.zeros((self.classes, ph, pw), dtype=torch.float32, device=dev)
            norm = torch.zeros((ph, pw), dtype=torch.float32, device=dev)
            ys, xs = tile_starts(ph, tile, cfg.overlap), tile_starts(pw, tile, cfg.overlap)
            coords = [(y, x0) for y in ys for x0 in xs]
            for i in range(0, len(coords), cfg.batch_tiles):
                if should_stop is not None and should_stop():
                    raise StonesegError("Cancelled.")
                chunk = coords[i : i + cfg.batch_tiles]
                batch = torch.stack([x[:, y : y + tile, x0 : x0 + tile] for y, x0 in chunk])
                probs = self._run_oom_safe_tensor(batch)
                for (y, x0), p in zip(chunk, probs):
                    acc[:, y : y + tile, x0 : x0 + tile] += p * weight
                    norm[y : y + tile, x0 : x0 + tile] += weight
            out = (acc / norm.clamp_min(1e-6)).cpu().numpy()
        return out

    def _run_oom_safe_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        """Forward a batch; out of memory, again one tile at a time; a tile alone: a message."""
        try:
            return self._forward_tensor(batch)
        except torch.OutOfMemoryError as exc:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) > 1:
                return torch.cat(
                    [self._run_oom_safe_tensor(batch[i : i + 1]) for i in range(len(batch))]
                )
            raise OutOfMemoryError(
                f"The {self.device.type.upper()} ran out of memory on one tile; use a smaller tile or the CPU."
            ) from exc

    def _run_oom_safe(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device)
        return self._run_oom_safe_tensor(x).cpu().numpy()

    def predict(
        self, image: np.ndarray, should_stop: Callable[[], bool] | None = None
    ) -> Prediction:
        """Probability and 0/255 mask (and boundary probability, if the model has it) at the photo's own size."""
        h, w = image.shape[:2]
        work = to_work_scale(image, self.info.work_size)
        probs = self.probabilities_at_work_scale(work, should_stop)
        prob, boundary = probs[0], probs[1] if len(probs) > 1 else None
        del probs
        if prob.shape != (h, w):
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
            if boundary is not None:
                boundary = cv2.resize(boundary, (w, h), interpolation=cv2.INTER_LINEAR)
        # bool viewed as 0/1 bytes, times 255 in place: one byte per pixel and no temporary
        # (np.where(...).astype(np.uint8) made an int64 plane: 192 MB and ~14x the time at 24 MP)
        mask = (prob >= self.config.threshold).view(np.uint8)
        mask *= 255
        return Prediction(probability=prob, mask=mask, boundary=boundary)


# ------------------------------------------------------------------------ folder segmentation


@dataclass(frozen=True)
class SegmentEvent:
    """One photo handled by ``iter_segment_folder``."""

    index: int  # 1-based
    total: int
    image: Path
    status: str  # "written", "skipped" or "failed"
    output: Path | None = None
    message: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class SegmentSummary:
    written: int
    skipped: int
    failed: list[tuple[Path, str]]
    cancelled: bool = False


def _prefetch(paths: list[Path], depth: int = 2) -> Iterator[tuple[Path, np.ndarray | Exception]]:
    """Decode the next photos on a background thread while the model runs."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def reader():
        for p in paths:
            if stop.is_set():
                return
            try:
                item = (p, read_image(p))
            except (ImageReadError, StonesegError) as exc:
                item = (p, exc)
            except Exception as exc:  # noqa: BLE001 - report and carry on with the next photo
                item = (p, ImageReadError(f"Cannot read image {p.name}: {exc}"))
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue

    t = threading.Thread(target=reader, name="stoneseg-prefetch", daemon=True)
    t.start()
    try:
        for _ in paths:
            yield q.get()
    finally:
        stop.set()


def iter_segment_folder(
    segmenter: Segmenter,
    input_dir: str | Path,
    output_dir: str | Path,
    overwrite: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[SegmentEvent, None, SegmentSummary]:
    """Segment every photo in ``input_dir`` into ``output_dir/<stem>.png`` (0/255).

    Bad files are reported and skipped; existing outputs are kept unless ``overwrite``.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    paths = list_images(input_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StonesegError(
            f"Cannot create output folder {output_dir}: {exc.strerror or exc}"
        ) from exc
    todo, skipped = [], []
    for p in paths:
        out = output_dir / f"{p.stem}.png"
        (skipped if out.exists() and not overwrite else todo).append(p)
    total = len(paths)
    written, failed, index = 0, [], 0
    for p in skipped:
        index += 1
        yield SegmentEvent(
            index, total, p, "skipped", output_dir / f"{p.stem}.png", "output exists"
        )
    cancelled = False
    for p, item in _prefetch(todo):
        if should_stop is not None and should_stop():
            cancelled = True
            break
        index += 1
        out = output_dir / f"{p.stem}.png"
        start = time.perf_counter()
        if isinstance(item, Exception):
            failed.append((p, str(item)))
            yield SegmentEvent(index, total, p, "failed", None, str(item))
            continue
        try:
            mask = segmenter.predict(item, should_stop).mask
            write_mask(out, mask)
        except StonesegError as exc:
            if should_stop is not None and should_stop():
                cancelled = True
                break
            failed.append((p, str(exc)))
            yield SegmentEvent(
                index, total, p, "failed", None, str(exc), time.perf_counter() - start
            )
            if isinstance(exc, OutOfMemoryError):
                raise
            continue
        written += 1
        yield SegmentEvent(index, total, p, "written", out, "", time.perf_counter() - start)
    return SegmentSummary(written=written, skipped=len(skipped), failed=failed, cancelled=cancelled)
