"""DA-RNN input attention over the encoder's features."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from forecast.models.attention.base import additive_score


class InputAttention(nn.Module):
    """Attention over input features at every encoder step (DA-RNN stage one, Qin et al.
    2017): e_t^k = v^T tanh(W [h_{t-1}; c_{t-1}] + U x^k), alpha_t = softmax_k(e_t),
    and the encoder reads alpha_t * x_t.

    Here the keys are the features: x^k is feature k's whole input series [L], so U x^k
    is computed once per window by `prepare`. Samples never mix: every tensor keeps its
    batch dimension first and the softmax runs over the feature axis only (the classic
    DA-RNN code flattens [B, F, ...] to [B * F, ...] and back in a different order).

    Args:
        n_features: F, encoder input columns.
        input_length: L, encoder steps (the length of each key x^k).
        state_dim: size of the query, 2 x encoder hidden size for [h; c].
        attention_dim: hidden size of the additive score (default input_length).
    """

    def __init__(
        self, n_features: int, input_length: int, state_dim: int, attention_dim: int | None = None
    ) -> None:
        super().__init__()
        A = attention_dim or input_length
        self.input_length = input_length
        self.W = nn.Linear(state_dim, A, bias=False)
        self.U = nn.Linear(input_length, A)
        self.v = nn.Linear(A, 1, bias=False)

    def prepare(self, x: Tensor) -> Tensor:
        """2 U x^k for every feature k, [B, F, A] (doubled for `additive_score`).

        Args:
            x: the encoder input [B, L, F].
        """
        if x.shape[1] != self.input_length:
            raise ValueError(
                f"input attention was built for {self.input_length} steps, got {x.shape[1]}"
            )
        return 2.0 * self.U(x.transpose(1, 2))  # [B, F, L] -> [B, F, A]

    def attend(self, state: Tensor, prepared: Tensor, x_t: Tensor) -> tuple[Tensor, Tensor]:
        """Weighted input and feature weights at one encoder step.

        Args:
            state: [h_{t-1}; c_{t-1}] of the encoder, [B, state_dim].
            prepared: `prepare(x)`, [B, F, A].
            x_t: the input at this step, [B, F].
        """
        query2 = 2.0 * self.W(state)[:, None, :]  # [B, 1, A]
        weights = torch.softmax(additive_score(self.v, query2, prepared), dim=-1)  # [B, F]
        return weights * x_t, weights

    def forward(self, state: Tensor, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """`(weighted x_t [B, F], weights [B, F])` for step `t` of the input `x` [B, L, F].

        Args:
            state: [h_{t-1}; c_{t-1}], [B, state_dim].
            x: the encoder input [B, L, F].
            t: the encoder step.
        """
        return self.attend(state, self.prepare(x), x[:, t])
