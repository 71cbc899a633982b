"""Interpretation: attention over time and features, permutation importance, integrated
gradients, their agreement, a deletion test, and the checks that decide whether an
attention map is evidence (`checks`: against a known truth with an interval, an untrained
copy, a uniform-attention ablation).

Free functions: tensors / DataFrames in, data + matplotlib Figures out. `interpret_model`
runs the sections (`sections`) for one fitted model and writes PNG + CSV pairs and a
summary of verdicts; `examples/interpret_demo.py` shows it on synthetic data.
"""

from forecast.interpret._common import lag_axis, lag_unit, save_figure
from forecast.interpret.agreement import (
    GroundTruthReport,
    agreement_matrix,
    block_scores,
    deletion_summary,
    deletion_test,
    ground_truth_check,
    rank_agreement,
    true_positions,
)
from forecast.interpret.checks import (
    UNIFORM_RATIO,
    TemporalCheck,
    attention_ablation,
    feature_truth_check,
    temporal_truth_check,
    uniform_temporal_attention,
    untrained_copy,
)
from forecast.interpret.collect import (
    AttentionSummary,
    WindowAttention,
    collect_attention,
    feature_frame,
    temporal_frame,
    window_attention,
)
from forecast.interpret.gradients import (
    Attribution,
    GradientImportance,
    gradient_importance,
    integrated_gradients,
)
from forecast.interpret.importance import lag_permutation_importance, permutation_importance
from forecast.interpret.plots import (
    plot_attention_heads,
    plot_attention_over_time,
    plot_feature_map,
    plot_temporal_attention,
    plot_window_attention,
)
from forecast.interpret.plots_importance import (
    plot_agreement,
    plot_deletion,
    plot_feature_importance,
    plot_lag_importance,
)
from forecast.interpret.report import InterpretationReport, interpret_model

__all__ = [
    "AttentionSummary",
    "Attribution",
    "GradientImportance",
    "GroundTruthReport",
    "InterpretationReport",
    "TemporalCheck",
    "UNIFORM_RATIO",
    "attention_ablation",
    "feature_truth_check",
    "temporal_truth_check",
    "uniform_temporal_attention",
    "untrained_copy",
    "WindowAttention",
    "agreement_matrix",
    "block_scores",
    "collect_attention",
    "deletion_summary",
    "deletion_test",
    "feature_frame",
    "gradient_importance",
    "ground_truth_check",
    "integrated_gradients",
    "interpret_model",
    "lag_axis",
    "lag_permutation_importance",
    "lag_unit",
    "permutation_importance",
    "plot_agreement",
    "plot_attention_heads",
    "plot_attention_over_time",
    "plot_deletion",
    "plot_feature_importance",
    "plot_feature_map",
    "plot_lag_importance",
    "plot_temporal_attention",
    "plot_window_attention",
    "rank_agreement",
    "save_figure",
    "temporal_frame",
    "true_positions",
    "window_attention",
]
