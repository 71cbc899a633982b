"""Result plots with many models: one panel per family, distinct styles, legends outside."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from forecast.plots import history_plot, horizon_error_plot
from forecast.report import model_family


def _legends_outside(fig) -> bool:
    renderer = FigureCanvasAgg(fig).get_renderer()
    return all(
        ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
        for ax in fig.axes
    )


def test_many_models_are_faceted_by_family_with_distinct_styles():
    names = [f"model_{i}" for i in range(18)]
    groups = {n: "baselines" if i < 6 else "LSTMs" for i, n in enumerate(names)}
    steps = np.arange(1, 25)
    per_h = pd.concat(
        [pd.DataFrame({"model": n, "step": steps, "mse": 0.1 * i + steps / 24}) for i, n in
         enumerate(names)]
    )  # fmt: skip
    fig = horizon_error_plot(per_h, groups=groups)
    assert [ax.get_title() for ax in fig.axes] == ["baselines", "LSTMs"]
    for ax in fig.axes:
        styles = {(line.get_color(), line.get_linestyle()) for line in ax.get_lines()}
        assert len(styles) == len(ax.get_lines())  # no two models look alike
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == [n for n in names if groups[n] == ax.get_title()]  # real names
    assert _legends_outside(fig)

    history = pd.DataFrame(
        {"epoch": [1, 2], "train_loss": [0.1, 0.09], "val_loss": [1.0, 0.9],
         "train_loss_free": [0.8, 0.7]}
    )  # fmt: skip
    fig, data = history_plot({n: history for n in names[6:]}, groups)
    assert [ax.get_title() for ax in fig.axes] == ["LSTMs"]
    assert len(fig.axes[0].get_lines()) == 3 * 12  # val, train as trained, train free
    assert set(data["model"]) == set(names[6:]) and _legends_outside(fig)


def test_model_families_follow_the_model_classes():
    assert model_family("naive") == model_family("nlinear") == "baselines"
    assert model_family("darnn") == model_family("lstm_classic") == "LSTMs"
    assert model_family("transformer_pretrained") == "transformers"
    assert model_family("dlinear") == "linear networks"
