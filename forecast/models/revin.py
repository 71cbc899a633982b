"""Reversible instance normalisation (RevIN, Kim et al. 2022) of the target channels.

Each window is shifted and scaled by the mean and standard deviation of its own input
part, the network works on that, and the output is mapped back. This removes the level
shifts between training and test periods that a global z-score leaves in (ETTh1's test
part sits well away from its training mean), which is where recurrent and attention
models otherwise lose to repeat-last-value.

The statistics of the last `normalize` call are kept on the module, so a network calls
`normalize(past)`, then `normalize_like(future)` for teacher-forced inputs, then
`denormalize(prediction)`. They are detached: the network learns to forecast the
normalised shape, not to move the statistics.

>>> revin = RevIN(1, affine=False)
>>> x = torch.tensor([[[1.0], [2.0], [3.0]]])  # [B=1, L=3, targets=1]
>>> z = revin.normalize(x)
>>> bool(torch.allclose(revin.denormalize(z), x, atol=1e-5))
True
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RevIN(nn.Module):
    """Per-window normalisation of [B, L, C] inputs, restored on [B, H, C] outputs.

    Args:
        n_channels: number of channels C normalised (the targets).
        affine: learn a per-channel scale and shift applied after normalising (and
            removed before restoring).
        eps: added to the variance, so constant windows do not divide by zero.
    """

    def __init__(self, n_channels: int, affine: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        if n_channels < 1:
            raise ValueError(f"RevIN needs at least one channel, got n_channels={n_channels}")
        self.n_channels = n_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(n_channels)) if affine else None
        self._mean: Tensor | None = None
        self._std: Tensor | None = None
        # False lets gradients through the statistics: the exact derivative of the whole
        # function, which integrated gradients needs (see forecast.interpret.gradients).
        self.detach_stats = True

    def _check(self, x: Tensor, what: str) -> None:
        if x.ndim != 3 or x.shape[-1] != self.n_channels:
            raise ValueError(
                f"RevIN.{what} expects [B, steps, {self.n_channels}], got {tuple(x.shape)}"
            )

    def normalize(self, x: Tensor) -> Tensor:
        """Normalise `x` [B, L, C] by its own statistics over L and remember them.

        Args:
            x: the input window of the channels.
        """
        self._check(x, "normalize")
        # Population variance, detached: the statistics are data, not something to learn.
        var, mean = torch.var_mean(x, dim=1, keepdim=True, unbiased=False)  # [B, 1, C] each
        if self.detach_stats:
            mean, var = mean.detach(), var.detach()
        self._mean = mean
        self._std = torch.sqrt(var + self.eps)  # [B, 1, C]
        return self.normalize_like(x)

    def _stats(self, what: str) -> tuple[Tensor, Tensor]:
        if self._mean is None or self._std is None:
            raise RuntimeError(f"RevIN.{what} needs statistics: call normalize(past) first")
        return self._mean, self._std

    def normalize_like(self, y: Tensor) -> Tensor:
        """Normalise `y` [B, S, C] with the statistics of the last `normalize` call.

        Args:
            y: values of the same windows, e.g. the true future fed by teacher forcing.
        """
        self._check(y, "normalize_like")
        mean, std = self._stats("normalize_like")
        z = (y - mean) / std
        if self.weight is not None:
            z = z * self.weight + self.bias
        return z

    def denormalize(self, y: Tensor) -> Tensor:
        """Map normalised outputs `y` [B, H, C] back to the input scale.

        Args:
            y: the network's output for the windows of the last `normalize` call.
        """
        self._check(y, "denormalize")
        mean, std = self._stats("denormalize")
        if self.weight is not None:
            # eps^2 keeps the division finite if a learnt scale collapses towards 0.
            y = (y - self.bias) / (self.weight + self.eps * self.eps)
        return y * std + mean

    def extra_repr(self) -> str:
        return f"{self.n_channels}, affine={self.weight is not None}, eps={self.eps}"
