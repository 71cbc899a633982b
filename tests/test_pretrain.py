"""Masked-reconstruction pretraining: masks, loss, learning, the two-stage model, runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from forecast import ColumnRoles, create_model, prepare_data
from forecast.checkpoint import load_checkpoint, save_checkpoint
from forecast.config import DataConfig, ExperimentConfig, RunConfig
from forecast.data.synthetic import make_driver_dataset
from forecast.experiment import run
from forecast.models.masking import draw_mask, mask_steps, masked_mse, mean_baseline_loss
from forecast.models.pretrain import (
    ENCODER_PARTS,
    MaskedEncoderNetwork,
    PretrainConfig,
    PretrainedTransformerForecaster,
)

TINY = {"d_model": 16, "n_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "d_ff": 32}
FAST = {"progress": False, "device": "cpu", "batch_size": 32}


def _within(share: float, p: float, n: int, k: float = 4.0) -> bool:
    """`share` of n Bernoulli(p) draws lies within k standard errors of p."""
    return abs(share - p) <= k * math.sqrt(p * (1 - p) / n)


@pytest.fixture(scope="module")
def synthetic():
    ds = make_driver_dataset(800, seed=0, n_covariates=2, lag=6)
    roles = ColumnRoles(("target",), ds.covariates)
    return prepare_data(ds.frame, roles, input_length=24, horizon=6)


# ------------------------------------------------------------------------- masks
def test_mask_proportions_over_many_draws():
    n_win, L = 5000, 40  # 15% of 40 = 6 steps per window
    x = torch.arange(L, dtype=torch.float32).expand(n_win, L)[..., None]  # distinct values
    token = torch.tensor([-1.0])
    out, picked = mask_steps(x, token, 0.15, torch.Generator().manual_seed(0))
    assert (picked.sum(dim=1) == 6).all()  # exactly round(0.15 L) per window
    per_step = picked.float().mean(dim=0)  # each position equally likely to be picked
    assert all(_within(float(s), 0.15, n_win) for s in per_step)
    out, x = out[..., 0], x[..., 0]
    assert torch.equal(out[~picked], x[~picked])  # unpicked steps untouched
    n = int(picked.sum())
    tok = picked & (out == -1)
    same = picked & (out == x)
    rand = picked & ~tok & ~same
    assert _within(float(tok.sum()) / n, 0.8, n)
    assert _within(float(rand.sum()) / n, 0.1, n)
    assert _within(float(same.sum()) / n, 0.1, n)
    # A random replacement shows the value of another, unpicked step of the same window.
    rows, cols = rand.nonzero(as_tuple=True)
    src = out[rows, cols].long()
    assert (src != cols).all() and (~picked[rows, src]).all()


def test_masks_are_seeded_and_validated():
    x = torch.randn(8, 20, 3)
    token = torch.zeros(3)
    a = mask_steps(x, token, generator=torch.Generator().manual_seed(1))
    b = mask_steps(x, token, generator=torch.Generator().manual_seed(1))
    c = mask_steps(x, token, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert draw_mask(2, 4, 0.01).picked.sum(dim=1).tolist() == [1, 1]  # at least one
    assert draw_mask(2, 4, 0.99).picked.sum(dim=1).tolist() == [3, 3]  # one stays visible
    with pytest.raises(ValueError, match="need length >= 2 and 0 < mask_ratio < 1"):
        draw_mask(2, 4, 1.0)
    with pytest.raises(ValueError, match="mask_ratio must be in"):
        PretrainConfig.from_params(mask_ratio=0.0)
    with pytest.raises(ValueError, match="unknown finetune 'half'"):
        PretrainConfig.from_params(finetune="half")
    with pytest.raises(ValueError, match="pretrain_epochs must be >= 0"):
        PretrainConfig.from_params(pretrain_epochs=-1)


# -------------------------------------------------------------------------- loss
def test_loss_only_depends_on_picked_steps():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 10, 2, generator=g), torch.randn(4, 10, 2, generator=g)
    picked = draw_mask(4, 10, 0.3, g).picked
    base = masked_mse(pred, target, picked)
    expected = ((pred - target) ** 2)[picked[..., None].expand_as(pred)].mean()
    torch.testing.assert_close(base, expected)
    moved = target.clone()
    moved[~picked] += 100.0  # unpicked targets (and predictions) are ignored
    torch.testing.assert_close(masked_mse(pred, moved, picked), base, rtol=0, atol=0)
    wild = pred.clone()
    wild[~picked] = float("inf")
    torch.testing.assert_close(masked_mse(wild, target, picked), base, rtol=0, atol=0)
    b, t = picked.nonzero()[0]
    moved = target.clone()
    moved[b, t, 0] += 1.0
    assert masked_mse(pred, moved, picked) != base
    # The baseline predicts each window's mean over its unpicked steps.
    mean = (target * ~picked[..., None]).sum(1, keepdim=True) / (~picked).sum(1)[:, None, None]
    torch.testing.assert_close(
        mean_baseline_loss(target, picked), masked_mse(mean.expand_as(target), target, picked)
    )


def test_pretraining_reads_only_the_past(synthetic):
    torch.manual_seed(0)
    net = MaskedEncoderNetwork(synthetic.layout, PretrainConfig.from_params(**TINY)).eval()
    batch = synthetic.train.batch(np.arange(8))
    garbage = {
        **batch,
        "future_target": torch.full_like(batch["future_target"], 1e6),
        "future_known": torch.full_like(batch["future_known"], -1e6),
    }
    outs = []
    for b in (batch, garbage):
        net.eval_generator.manual_seed(3)
        outs.append(net(b))
    torch.testing.assert_close(outs[0].prediction, outs[1].prediction, rtol=0, atol=0)
    assert outs[0].prediction.shape == (8, 24, 3)  # target + 2 past covariates
    # Unpicked reconstruction targets are the visible-step z-scores of the target.
    target, picked = outs[0].extras["target"], outs[0].extras["picked"]
    visible = target[..., 0][~picked].view(8, -1)
    torch.testing.assert_close(visible.mean(dim=1), torch.zeros(8), atol=1e-5, rtol=0)


def test_reconstruction_beats_the_series_mean(synthetic):
    model = create_model(
        "transformer_pretrained",
        synthetic.layout,
        **{**TINY, "d_model": 32, "d_ff": 64, **FAST},
        pretrain_epochs=12,
        pretrain_lr=1e-2,
        dropout=0.0,
        patience=None,
    )
    hist = model.pretrain(synthetic.train, synthetic.val)
    assert list(hist["epoch"]) == list(range(1, 13))
    last = hist.iloc[-1]
    assert last["val_loss"] < 0.5 * last["val_baseline"]
    assert last["train_loss"] < 0.5 * last["train_baseline"]


# --------------------------------------------------------------- two-stage model
def test_two_stage_model_transfers_the_encoder(synthetic, tmp_path):
    params = {**TINY, **FAST, "epochs": 2, "pretrain_epochs": 2}
    model = create_model("transformer_pretrained", synthetic.layout, **params, finetune="probe")
    assert isinstance(model, PretrainedTransformerForecaster)
    assert model.config.decoding == "direct" and model.config.train.teacher_forcing == 0.0
    model.fit(synthetic.train, synthetic.val)
    pre = model.extra_histories_["pretrain"]
    assert len(pre) == 2 and {"train_baseline", "val_baseline"} <= set(pre)
    assert len(model.history_) == 2
    # Probe: the encoder is frozen at its pretrained weights; the rest has trained.
    state = model.network.state_dict()
    for k, v in model._encoder_state.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    assert any(k.split(".")[0] in ("encoder",) for k in model._encoder_state)
    scratch = create_model("transformer_direct", synthetic.layout, **TINY, **FAST, epochs=1)
    torch.manual_seed(0)
    init = scratch.build_network().state_dict()
    assert not torch.equal(state["head.weight"], init["head.weight"])
    # Fine-tuning starts from transformer_direct's initial weights, encoder swapped in.
    torch.manual_seed(0)
    start = model.build_network().state_dict()
    for k, v in init.items():
        want = model._encoder_state.get(k, v)
        torch.testing.assert_close(start[k], want, rtol=0, atol=0)
    # Checkpoint round trip: identical forecasts, both histories kept.
    path = save_checkpoint(model, tmp_path / "p.pt", scaler=synthetic.scaler)
    again = load_checkpoint(path)
    assert isinstance(again, PretrainedTransformerForecaster)
    assert again.config == model.config
    batch = synthetic.test.batch(np.arange(6))
    torch.testing.assert_close(
        model.predict_batch(batch).prediction, again.predict_batch(batch).prediction, rtol=0, atol=0
    )
    pd.testing.assert_frame_equal(again.extra_histories_["pretrain"], pre, check_dtype=False)


def test_no_pretraining_is_transformer_direct(synthetic):
    params = {**TINY, **FAST, "epochs": 1}
    a = create_model("transformer_pretrained", synthetic.layout, **params, pretrain_epochs=0)
    b = create_model("transformer_direct", synthetic.layout, **params)
    batch = synthetic.test.batch(np.arange(4))
    pa = a.fit(synthetic.train, synthetic.val).predict_batch(batch).prediction
    pb = b.fit(synthetic.train, synthetic.val).predict_batch(batch).prediction
    torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert a.extra_histories_ == {}


def test_run_folder_holds_the_pretraining_history(tmp_path):
    cfg = ExperimentConfig(
        models=["transformer_pretrained"],
        data=DataConfig(synthetic_rows=600, input_length=24, horizon=6),
        run=RunConfig(output_dir=str(tmp_path), name="r", progress=False, threads=1, plots=False),
        train={"epochs": 1, "max_train_windows": 64, "max_val_windows": 32},
        model={"transformer_pretrained": {**TINY, "pretrain_epochs": 2}},
    )
    folder = run(cfg).run_dir
    hist = pd.read_csv(folder / "history/transformer_pretrained_seed0_pretrain.csv")
    assert len(hist) == 2 and hist["val_baseline"].notna().all()
    assert (folder / "history/transformer_pretrained_seed0.csv").is_file()
    assert set(ENCODER_PARTS) >= {"encoder", "enc_value"}
