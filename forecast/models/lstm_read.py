"""The read decoder: the forecast is read from the inputs through the attention.

A classic attention decoder mixes encoder *states*: a recurrent summary, from which a
map that points at step t - k does not tell whether the forecast used the input at
t - k, and the decoder can forecast from its own state and ignore the map. This decoder
closes both doors:

- **What is read is the input itself.** Every past target and past covariate x_{j,v}
  (j an input step, v a feature; also its negation -x_{j,v}, so a convex mixture can
  read a feature with either sign) is a value. Each feature has its own distribution
  over input steps a_{h,v,j} and the features are mixed by weights beta_{h,v}: the
  forecast step h reads r_h = sum_{v,j} beta_{h,v} a_{h,v,j} x_{j,v}, a convex
  combination of inputs. pi_{h,j,v} = beta_{h,v} a_{h,v,j} is one probability
  distribution over (input step, feature): the map *is* the weights of what is read.
- **No bypass.** The forecast is y_h = w r_h + b + (known-future covariates at h) W_k
  + skip_h: the only path from the past covariates to the forecast goes through pi.
  skip_h is a linear map of the targets' own window in NLinear form (the last value
  subtracted, then added back), which anchors the first step on the last observation
  and carries the autoregressive part. It starts at the least-squares fit of the
  training windows (`warm_start`), and the training loop keeps that start unless an
  epoch beats it on validation: the model is never worse there than a ridge
  autoregression.
- **Where to look** is a learnable lag prior plus content: the score of input step j
  for step h and feature v is c_h(j) + b_v(lag), lag = L + h - j (rows between the
  input and the forecast target, the same for every step when a driver acts at a fixed
  lag, so the peak moves one step per horizon step by construction). c_h(j) is the
  attention type's score (Bahdanau, Luong dot / general / concat, local-m / local-p) of
  the decoder state at step h against the encoder state at j plus a projection of the
  input at j, times a gate that starts at 0. Training has two phases: the lag prior
  trains alone (no LSTM runs, so these epochs are cheap) until validation stops
  improving or `attention_warmup` epochs pass; then content joins, from the best
  weights so far at the full learning rate (`next_phase`, `set_epoch`), and the loop
  keeps it only if it improves the validation loss. Content scores that see the inputs
  can select positions per window and overfit; finding the lags first keeps them from
  steering the prior into a distractor's lag.
- **Feature mixing** beta is a learned distribution per target; with
  `feature_attention` (DA-RNN) it also depends on the window: an additive score of the
  decoder state against each feature's input series (Qin et al.'s input attention, asked
  at decoding time), behind the same gate.

The decoder LSTM runs over the horizon on the known-future covariates and a one-hot of
the step (`decoding='direct'`, one call), or step by step also fed the previous
forecast (`'autoregressive'`, with teacher forcing); either way it only shapes the
queries. Measured on a lagged-driver generator and ETTh1 in `bench/attention_accuracy.py`
(see docs/benchmarks.md).

A few scalars (the lag prior, the feature logits, the read's scale) are stored divided
by `FAST = 10` and multiplied back in `forward`: under Adam this gives them a 10x larger
effective learning rate, so the map sharpens within the epochs the rest needs.

Cost. The largest tensor is the per-feature map a [B, 2V, H, L]. In the lag-prior phase
it is the same for every window, so it is computed once per batch as [2V, H, L] and the
read is one matrix product. In the content phase, a training forward (`maps=False`, what
the training loop asks for) reads through `forecast.models.fused.softmax_read`, one
autograd node with the softmax's closed-form gradient, and builds no maps; the global
attention types skip the local types' masking. bench/bench_floor.py times both phases
against the bare-kernel floor (figures in docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from forecast.data.windows import WindowDataset, WindowLayout
from forecast.models.attention import Attention, create_attention
from forecast.models.attention.normalizers import get_normalizer, uniform
from forecast.models.fused.read import row_read, softmax_read
from forecast.models.ridge import RidgeAccumulator

FAST = 10.0
DECODINGS = ("direct", "autoregressive")


def nlinear_least_squares(
    train: WindowDataset, alpha: float = 1.0, max_windows: int = 20_000, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Ridge weights [H, L] and bias [H] of the NLinear map from a target's window
    (minus its last value) to its horizon (minus the same), shared by every target, on
    (a seeded subset of) the training windows: the closed-form start of a linear skip.

    Args:
        train: training windows.
        alpha: ridge penalty (as the `nlinear` baseline's).
        max_windows: windows used at most.
        seed: seed of the subset.
    """
    n = len(train)
    idx = np.arange(n)
    if n > max_windows:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_windows, replace=False))
    batch = train.batch(idx)
    past, future = batch["past_target"], batch["future_target"]
    last = past[:, -1:]
    acc = RidgeAccumulator()
    acc.add(
        (past - last).transpose(1, 2).reshape(-1, past.shape[1]).numpy(),  # [N * T, L]
        (future - last).transpose(1, 2).reshape(-1, future.shape[1]).numpy(),  # [N * T, H]
    )
    coef, intercept = acc.solve(alpha)
    return torch.as_tensor(coef, dtype=torch.float32), torch.as_tensor(
        intercept, dtype=torch.float32
    )


def start_skip(skip: nn.Linear, train: WindowDataset) -> None:
    """Set a linear skip [L -> H] to the least-squares NLinear fit of `train`
    (`nlinear_least_squares`): the closed-form start of a network's `warm_start`.

    Args:
        skip: the layer, weight [H, L] and bias [H].
        train: the training windows.
    """
    weight, bias = nlinear_least_squares(train)
    with torch.no_grad():
        skip.weight.copy_(weight.to(skip.weight.device))
        skip.bias.copy_(bias.to(skip.bias.device))


class ReadDecoder(nn.Module):
    """Forecast [B, H, T] read from the inputs; see the module docstring.

    With `attention='none'` there is no read: the forecast is a linear map of the decoder
    state (plus the skip and the known-covariate term), the plain encoder-decoder.

    Args:
        layout: shapes and column roles of the windows.
        state_dim: size of the encoder states.
        cfg: the model config (`forecast.models.lstm.LSTMConfig`).
    """

    is_temporal_attention = True  # `interpret.checks` may set `uniform`

    def __init__(self, layout: WindowLayout, state_dim: int, cfg: Any) -> None:
        super().__init__()
        D, L, H = cfg.hidden_size, layout.input_length, layout.horizon
        T, K = layout.n_targets, layout.n_known
        self.n_targets = T
        self.n_values = T + layout.n_past  # features read: targets and past covariates
        V2 = 2 * self.n_values  # each with both signs
        F = len(layout.encoder_features)
        self.horizon, self.autoregressive = H, cfg.decoding == "autoregressive"
        self.warmup = cfg.attention_warmup
        # A buffer, so best-epoch snapshots and checkpoints carry the phase with the weights.
        self.register_buffer("content_on", torch.tensor(self.warmup == 0))
        self.content = self.warmup == 0  # the buffer's value as a Python bool: no device sync
        self.content_tried = self.warmup == 0
        self.attention = create_attention(
            cfg.attention,
            D,
            D,
            attention_dim=cfg.attention_dim,
            scale=cfg.attention_scale,
            window=cfg.attention_window,
            normalizer=cfg.normalizer,
        )
        self.normalize = get_normalizer(cfg.normalizer)
        # Whether the type's scores can be -inf (the local windows): the global types' never
        # are, and then a softmax read trains as one node (`forecast.models.fused.read`).
        self.masks = self.attention is not None and (
            type(self.attention).mask_scores is not Attention.mask_scores
        )
        self.fused_read = cfg.normalizer == "softmax" and not self.masks
        self.uniform = False  # True: uniform weights over the input steps (an ablation)
        # Queries: a decoder LSTM over [known covariates, one-hot step (, previous forecast)].
        dec_in = K + H + (T if self.autoregressive else 0)
        between = cfg.dropout if cfg.num_layers > 1 else 0.0
        self.lstm = nn.LSTM(dec_in, D, cfg.num_layers, batch_first=True, dropout=between)
        self.register_buffer("steps", torch.eye(H), persistent=False)
        self.known = nn.Linear(K, T) if K else None
        self.skip = nn.Linear(L, H)  # NLinear on each target's own window, shared
        if self.attention is None:
            self.state_head = nn.Linear(D, T)
            nn.init.zeros_(self.state_head.weight)  # start as the skip; learn the rest
            nn.init.zeros_(self.state_head.bias)
            return
        self.step_query = nn.Parameter(torch.zeros(H, D))
        self.key_state = nn.Linear(state_dim, D, bias=False)
        self.key_input = nn.Linear(F, D)
        self.gate = nn.Parameter(torch.zeros(()))  # content's weight, 0 at the start
        # The lag prior per read feature, indexed by lag - 1 = L + h - j - 1.
        self.lag_prior = nn.Parameter(torch.zeros(V2, L + H - 1))
        h, j = torch.arange(H)[:, None], torch.arange(L)[None, :]
        self.register_buffer("lag_index", L - 1 + h - j, persistent=False)  # [H, L]
        self.feature_logits = nn.Parameter(torch.zeros(T, V2))
        self.feature_score = None
        if cfg.feature_attention:  # DA-RNN input attention, asked by the decoder state
            A = cfg.attention_dim or D
            self.feature_score = nn.ModuleDict(
                {
                    "W": nn.Linear(D, A, bias=False),
                    "U": nn.Linear(L, A),
                    "v": nn.Linear(A, 1, bias=False),
                }
            )
        self.read_scale = nn.Parameter(torch.full((T,), 1.0 / FAST))
        self.read_bias = nn.Parameter(torch.zeros(T))

    def warm_start(self, train: WindowDataset) -> None:
        """Start the skip at the least-squares NLinear fit of the training windows, so
        training starts from a ridge autoregression (its weights, not its predictions:
        the read and the known-covariate term are added on top).

        Args:
            train: the training windows.
        """
        start_skip(self.skip, train)

    def set_epoch(self, epoch: int) -> None:
        """Content scores (and DA-RNN feature scores) join after `attention_warmup`
        epochs at the latest (earlier through `next_phase`); until then the map is the
        lag prior alone and no LSTM runs.

        Args:
            epoch: the training epoch about to run, from 1.
        """
        if epoch == 1:
            self.content_tried = False
        if epoch > self.warmup and not self.content_tried:
            self._start_content()

    def next_phase(self) -> bool:
        """Start the content phase now (the training loop calls this where early stopping
        would end the lag-prior phase); False if it has started already.
        """
        if self.content or self.attention is None or self.content_tried:
            return False
        self._start_content()
        return True

    def _start_content(self) -> None:
        self.content_on.fill_(True)
        self.content = True
        self.content_tried = True  # not in the state dict: restoring weights keeps it

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        self.content = bool(self.content_on)  # once per load, not per step

    def chunk_rows(self, rows: int, budget: int = 1 << 25) -> int:
        """Windows per forward pass that keep the per-feature maps [rows, 2V, H, L] under
        `budget` elements; only without autograd (training batches are the user's)."""
        if torch.is_grad_enabled() or self.attention is None:
            return rows
        per_row = 2 * self.n_values * self.horizon * self.lag_index.shape[1]
        return max(1, min(rows, budget // per_row))

    @property
    def phase(self) -> int:
        """1 while the map is the lag prior alone, 2 once content has joined."""
        return 2 if self.attention is not None and self.content else 1

    def needs_states(self) -> bool:
        """Whether this forward reads the encoder (and decoder) LSTMs."""
        return self.attention is None or self.content

    def _feature_weights(self, s: Tensor | None, values: Tensor) -> Tensor:
        """beta [B or 1, Hq or 1, T, V2]: how the read mixes the features."""
        logits = FAST * self.feature_logits  # [T, V2]
        if self.feature_score is None or s is None:
            return torch.softmax(logits, dim=-1)[None, None]
        fs = self.feature_score
        keys = fs["U"](values.transpose(1, 2))  # [B, V2, A]: each feature's input series
        e = fs["v"](torch.tanh(fs["W"](s)[:, :, None] + keys[:, None])).squeeze(-1)  # [B,Hq,V2]
        return torch.softmax(logits + self.gate * e[:, :, None], dim=-1)  # [B, Hq, T, V2]

    def _mix(self, q: Tensor | None, values: Tensor, read: Tensor) -> tuple[Tensor, Tensor]:
        """y [B, Hq, T], the read [B, Hq, 2V] mixed over the features, and the mixture
        beta [1, 1, T, 2V] or [B, Hq, T, 2V]."""
        beta = self._feature_weights(q, values)  # [1, 1, T, 2V] or [B, Hq, T, 2V]
        if beta.shape[:2] == (1, 1):  # the same mixture for every window and step
            mix = read @ beta[0, 0].T  # [B, Hq, T]
        else:
            mix = torch.einsum("bhtv,bhv->bht", beta, read)
        return FAST * self.read_scale * mix + self.read_bias, beta

    def _steps(
        self, q: Tensor | None, keys: Tensor | None, values: Tensor, lo: int, maps: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The read part of steps lo .. lo + Hq - 1: y [B, Hq, T], maps [B, Hq, L] and
        [B, L, V] (summed over these steps, not yet averaged; None unless `maps`).

        Args:
            q: queries [B, Hq, D] (None during the warm-up).
            keys: prepared keys (None during the warm-up).
            values: [B, L, 2V] the inputs read, both signs.
            lo: the first step.
            maps: also return the maps (the training loop asks for none).
        """
        if self.attention is None:
            return self.state_head(q), None, None
        B, Hq = values.shape[0], (q.shape[1] if q is not None else self.horizon - lo)
        V2 = values.shape[2]
        prior = FAST * self.lag_prior[:, self.lag_index[lo : lo + Hq]]  # [2V, Hq, L]
        normalize = uniform if self.uniform else self.normalize
        if q is None:  # the lag prior alone: one map [2V, Hq, L] for every window
            a = normalize(prior)
            read = torch.bmm(a, values.permute(2, 1, 0)).permute(2, 1, 0)  # [B, Hq, 2V]
        else:
            c = self.attention.masked_scores(q, keys, step=lo, horizon=self.horizon)  # [B,Hq,L]
            if self.masks:  # a local type: -inf outside its window, kept out of the sum
                hidden = torch.isneginf(c)
                c = self.gate * c.masked_fill(hidden, 0.0)
                scores = (prior + c[:, None]).masked_fill(hidden[:, None], float("-inf"))
            elif not maps and self.fused_read and not self.uniform:  # training: one node
                y, _ = self._mix(q, values, softmax_read(prior, self.gate * c, values))
                return y, None, None
            else:
                scores = prior + (self.gate * c)[:, None]  # [B, 2V, Hq, L]
            a = normalize(scores)
            read = row_read(a, values.transpose(1, 2)).transpose(1, 2)  # [B, Hq, 2V]
        y, beta = self._mix(q, values, read)
        if not maps:
            return y, None, None
        # The map pi_{h,j,v} = beta_{h,v} a_{h,v,j}, averaged over targets, both signs of
        # a feature together; marginals only ([B, Hq, L] and [B, L, V]), never pi itself.
        w = beta.mean(2)  # [1 or B, 1 or Hq, 2V]
        if a.ndim == 3:  # the prior's map, the same for every window
            temporal = torch.einsum("v,vhl->hl", w[0, 0], a).expand(B, Hq, -1)
            per_value = torch.einsum("v,vhl->lv", w[0, 0], a).expand(B, -1, V2)
        elif w.shape[:2] == (1, 1):
            temporal = (w[0, 0] @ a.reshape(B, V2, -1)).view(B, Hq, -1)
            per_value = (a.sum(2) * w[0, 0, :, None]).transpose(1, 2)
        else:
            w = w.expand(B, Hq, V2)
            temporal = torch.einsum("bhv,bvhl->bhl", w, a)
            per_value = torch.einsum("bhv,bvhl->blv", w, a)
        V = self.n_values
        return y, temporal.contiguous(), per_value[..., :V] + per_value[..., V:]

    def forward(
        self,
        memory: Tensor | None,
        state: tuple[Tensor, Tensor] | None,
        x: Tensor,
        inputs: Tensor,
        future_known: Tensor,
        truth: Tensor | None = None,
        teacher_forcing: float = 0.0,
        generator: torch.Generator | None = None,
        maps: bool = True,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Forecast [B, H, T], temporal map [B, H, L] and the map over (input step, read
        feature) [B, L, V] averaged over the steps (both None without attention or
        without `maps`).

        Args:
            memory: encoder states [B, L, state_dim] (None when `needs_states()` is False).
            state: the decoder's initial (h, c) [layers, B, D] (None likewise).
            x: the encoder input [B, L, F] (targets, maybe RevIN-normalised, past
                covariates, past known): it forms the keys.
            inputs: what can be read, in the data's (scaled) units [B, L, V]: the
                targets, then the past covariates.
            future_known: [B, H, K].
            truth: true future targets [B, H, T] (teacher forcing only).
            teacher_forcing: probability of feeding the true previous target
                (autoregressive decoding).
            generator: random generator of the teacher-forcing draws.
            maps: compute the maps (the training loop asks for none).
        """
        B, H = x.shape[0], self.horizon
        T = self.n_targets
        past = inputs[..., :T]  # [B, L, T]
        last = past[:, -1:]  # [B, 1, T]
        # Targets are read relative to the last observation (level shifts cancel, as in
        # NLinear); covariates as they are (their effect does not depend on the level).
        values = torch.cat([past - last, inputs[..., T:]], dim=-1)  # [B, L, V]
        values = torch.cat([values, -values], dim=-1)  # [B, L, 2V]
        base = self.skip((past - last).transpose(1, 2)).transpose(1, 2) + last  # [B, H, T]
        if self.known is not None:
            base = base + self.known(future_known)
        keys = None
        if self.needs_states() and self.attention is not None:
            keys = self.attention.prepare_keys(self.key_state(memory) + self.key_input(x))
        steps = self.steps.expand(B, -1, -1)  # [B, H, H] one-hot of the step
        previous = self.attention is not None and self.attention.uses_previous_state
        if not self.needs_states():  # warm-up: the lag prior only, no query
            y, temporal, per_value = self._steps(None, None, values, 0, maps)
        elif not self.autoregressive or (truth is not None and teacher_forcing >= 1.0):
            # One decoder call over the horizon: direct decoding, or full teacher forcing
            # (every step's input is known: the previous true target).
            inputs = [future_known, steps]
            if self.autoregressive:
                inputs.append(torch.cat([last, truth[:, :-1]], dim=1))  # [B, H, T]
            s, _ = self.lstm(torch.cat(inputs, dim=-1), state)  # [B, H, D]
            if previous:  # Bahdanau: the query of step h is the state after step h - 1
                s = torch.cat([state[0][-1][:, None], s[:, :-1]], dim=1)
            q = s + self.step_query if self.attention is not None else s
            y, temporal, per_value = self._steps(q, keys, values, 0, maps)
        else:
            return self._loop(
                state,
                keys,
                values,
                future_known,
                base,
                last,
                truth,
                teacher_forcing,
                generator,
                maps,
            )
        per_value = per_value / H if per_value is not None else None
        return base + y, temporal, per_value

    def _loop(
        self,
        state: tuple[Tensor, Tensor],
        keys: Tensor | None,
        values: Tensor,
        future_known: Tensor,
        base: Tensor,
        last: Tensor,
        truth: Tensor | None,
        teacher_forcing: float,
        generator: torch.Generator | None,
        maps: bool,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Autoregressive decoding step by step: step h's query also sees the forecast of
        step h - 1 (or the truth, with probability `teacher_forcing` < 1; at 1 `forward`
        makes one call)."""
        B, H = values.shape[0], self.horizon
        use_truth = None
        if truth is not None and 0.0 < teacher_forcing < 1.0:
            where = generator.device if generator is not None else torch.device("cpu")
            draw = torch.rand(B, H, 1, generator=generator, device=where)
            use_truth = (draw < teacher_forcing).to(values.device)  # [B, H, 1]
        previous = self.attention is not None and self.attention.uses_previous_state
        h_prev = state[0][-1][:, None]  # [B, 1, D] the state before step 0
        prev = last  # [B, 1, T] the last observed targets feed step 0
        ys, temporals, per_value = [], [], 0.0
        for t in range(H):
            step = self.steps[t].expand(B, 1, H)
            s, state = self.lstm(torch.cat([future_known[:, t : t + 1], step, prev], -1), state)
            q = h_prev if previous else s
            if self.attention is not None:
                q = q + self.step_query[t]
            y, temporal, pv = self._steps(q, keys, values, t, maps)
            y = y + base[:, t : t + 1]  # [B, 1, T]
            ys.append(y)
            temporals.append(temporal)
            per_value = per_value + pv if pv is not None else None
            h_prev = s
            if use_truth is not None:
                prev = torch.where(use_truth[:, t : t + 1], truth[:, t : t + 1], y)
            else:
                prev = y
        temporal = torch.cat(temporals, dim=1) if temporals[0] is not None else None
        return torch.cat(ys, dim=1), temporal, (per_value / H if per_value is not None else None)
