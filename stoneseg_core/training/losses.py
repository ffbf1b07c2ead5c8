"""The training losses: Dice + BCE-with-logits for the stone mask, and its two-channel twin for
the "mask+boundary" target."""

from __future__ import annotations

import torch
from torch import nn


class DiceBCELoss(nn.Module):
    """Dice + BCE-with-logits: Dice handles the stone/background imbalance, BCE the calibration."""

    def __init__(self) -> None:
        super().__init__()
        # segmentation_models_pytorch pulls in timm and more: loaded when a loss is made
        from segmentation_models_pytorch.losses import DiceLoss

        self.dice = DiceLoss(mode="binary", from_logits=True)
        self.bce = nn.BCEWithLogitsLoss()

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits = logits.float()
        if weight is None:
            return self.dice(logits, target) + self.bce(logits, target)
        # BCE weighted per pixel, normalised by the weights so the loss keeps its scale
        per_pixel = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return self.dice(logits, target) + (per_pixel * weight).sum() / weight.sum()


class StoneBoundaryLoss(nn.Module):
    """For the "mask+boundary" target: Dice + BCE on the stone channel (the loss of a
    1-channel model; its BCE weighted per pixel by a third target plane where the dataset
    adds one, ``TrainConfig.small_stone_weight``) plus ``boundary_weight`` x (Dice + BCE) on
    the boundary channel.

    Each channel gets its own Dice: SMP's binary Dice pools every channel of an image
    together, which would let the large stone channel drown the thin boundary band.
    """

    def __init__(self, boundary_weight: float = 1.0) -> None:
        super().__init__()
        self.stone = DiceBCELoss()
        self.boundary = DiceBCELoss()
        self.boundary_weight = boundary_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # a third target plane, where there is one, weighs the stone channel's BCE per pixel
        weight = target[:, 2:3] if target.shape[1] > 2 else None
        stone = self.stone(logits[:, :1], target[:, :1], weight)
        return stone + self.boundary_weight * self.boundary(logits[:, 1:2], target[:, 1:2])


__all__ = ["DiceBCELoss", "StoneBoundaryLoss"]
