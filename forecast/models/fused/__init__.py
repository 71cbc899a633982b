"""Attention decoder loops as one autograd node each, with a hand-written backward.

A decoder whose next input depends on its last prediction (teacher forcing below 1,
free-running) or whose step input holds the context (Bahdanau) cannot run its horizon
in one LSTM call. Under autograd each of its H steps records dozens of small nodes; on
a CPU their dispatch is most of a training step. The nodes here run the same arithmetic
as `ClassicDecoder.forward`'s step loop (`forecast.models.lstm_classic`: one LSTM
layer, the head on [s_t; c_t] for Bahdanau,
on h~ = tanh(W_c [c_t; s_t]) for Luong):

- forward runs the loop with `torch.lstm_cell` and keeps each step's inputs and states;
  the LSTM's local derivatives are then computed for all steps at once (`steps`);
- backward walks the steps in reverse for what is truly sequential (the state, cell and
  fed-back prediction gradients, each step's score gradient) and computes every weight
  gradient afterwards as one matrix product over all steps, instead of H small ones.

`bahdanau_decode` (additive score) and `luong_decode` (dot and general scores) are the
two nodes; `ClassicDecoder.path` says when one runs (one LSTM layer, softmax, no
dropout active). Their speed against the autograd loop is measured by
`bench/bench_lstm.py` (`bahdanau` against `bahdanau_loop`, `luong_tf0.5` against
`luong_tf0.5_loop`; figures in docs/benchmarks.md).

`softmax_read` (module `read`) is the read decoder's read as one node, with the
softmax's closed-form gradient.

`tests/test_fused_decoder.py` checks outputs and every gradient against the step loop in
float64, for each teacher-forcing mode, and runs `torch.autograd.gradcheck` on each node.
Under AMP a node computes in float32 (its predictions and weights come out in float32,
where the loop's would be in the autocast dtype); the training loop calls backward
outside autocast, as it should. The nodes have first derivatives only: a backward with
`create_graph=True` raises.
"""

from __future__ import annotations

from forecast.models.fused.bahdanau import bahdanau_decode
from forecast.models.fused.luong import luong_decode
from forecast.models.fused.read import softmax_read

__all__ = ["bahdanau_decode", "luong_decode", "softmax_read"]
