"""A transformer encoder block as exporters write it, with two inputs (ids and an attention mask) and an open
batch dimension (issue 11, item 6)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.model.loading import load_graph
from tests.helpers import make_model, max_chain_error, tensor, weight

HIDDEN, HEADS, SEQ, VOCAB = 32, 4, 16, 50


def _encoder(path):
    d = HIDDEN // HEADS
    scale = 1 / np.sqrt(HIDDEN)
    nodes = [
        helper.make_node("Gather", ["embeddings", "input_ids"], ["emb"], name="embed", axis=0),
        helper.make_node("LayerNormalization", ["emb", "ln1_g", "ln1_b"], ["h0"], name="ln1", axis=-1),
        # Q, K, V and the split into heads: [B, S, H] -> [B, heads, S, d]
        *[n for name in "qkv" for n in (
            helper.make_node("MatMul", ["h0", f"w{name}"], [f"{name}_flat"], name=f"proj_{name}"),
            helper.make_node("Reshape", [f"{name}_flat", "heads_shape"], [f"{name}_4d"], name=f"reshape_{name}"),
            helper.make_node("Transpose", [f"{name}_4d"], [f"{name}_heads"], name=f"heads_{name}",
                             perm=[0, 2, 3, 1] if name == "k" else [0, 2, 1, 3]))],
        helper.make_node("MatMul", ["q_heads", "k_heads"], ["scores_raw"], name="qk"),
        helper.make_node("Mul", ["scores_raw", "inv_sqrt"], ["scores"], name="scale"),
        # The mask: 1 keeps a position, 0 hides it: (1 - mask) * -10000, broadcast over heads and queries.
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], name="mask_cast", to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "mask_f"], ["hidden_pos"], name="mask_invert"),
        helper.make_node("Mul", ["hidden_pos", "big_negative"], ["mask_bias"], name="mask_scale"),
        helper.make_node("Unsqueeze", ["mask_bias", "axes12"], ["mask_4d"], name="mask_unsqueeze"),
        helper.make_node("Add", ["scores", "mask_4d"], ["masked"], name="mask_add"),
        helper.make_node("Softmax", ["masked"], ["probs"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["probs", "v_heads"], ["context_heads"], name="av"),
        helper.make_node("Transpose", ["context_heads"], ["context_4d"], name="merge_heads", perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["context_4d", "hidden_shape"], ["context"], name="merge_reshape"),
        helper.make_node("MatMul", ["context", "wo"], ["attn_out"], name="proj_out"),
        helper.make_node("Add", ["attn_out", "h0"], ["res1"], name="residual1"),
        helper.make_node("LayerNormalization", ["res1", "ln2_g", "ln2_b"], ["h1"], name="ln2", axis=-1),
        helper.make_node("MatMul", ["h1", "w_ff1"], ["ff1"], name="ff1"),
        # Gelu written out with Erf, as PyTorch exports it: 0.5 * x * (1 + erf(x / sqrt(2)))
        helper.make_node("Div", ["ff1", "sqrt2"], ["ff1_scaled"], name="gelu_div"),
        helper.make_node("Erf", ["ff1_scaled"], ["ff1_erf"], name="gelu_erf"),
        helper.make_node("Add", ["ff1_erf", "one"], ["ff1_erf1"], name="gelu_add"),
        helper.make_node("Mul", ["ff1", "ff1_erf1"], ["ff1_mul"], name="gelu_mul"),
        helper.make_node("Mul", ["ff1_mul", "half"], ["gelu"], name="gelu_half"),
        helper.make_node("MatMul", ["gelu", "w_ff2"], ["ff2"], name="ff2"),
        helper.make_node("Add", ["ff2", "h1"], ["res2"], name="residual2"),
        helper.make_node("LayerNormalization", ["res2", "ln3_g", "ln3_b"], ["encoded"], name="ln3", axis=-1),
    ]

    def const(name, value, dtype=np.float32):
        return numpy_helper.from_array(np.array(value, dtype=dtype), name)

    inits = [weight("embeddings", [VOCAB, HIDDEN], 1), *(weight(f"w{n}", [HIDDEN, HIDDEN], 2 + i) for i, n in
                                                         enumerate("qkvo")),
             weight("w_ff1", [HIDDEN, 4 * HIDDEN], 7), weight("w_ff2", [4 * HIDDEN, HIDDEN], 8),
             *(const(f"ln{i}_g", np.ones(HIDDEN)) for i in (1, 2, 3)), *(const(f"ln{i}_b", np.zeros(HIDDEN))
                                                                         for i in (1, 2, 3)),
             const("heads_shape", [0, 0, HEADS, d], np.int64), const("hidden_shape", [0, 0, HIDDEN], np.int64),
             const("inv_sqrt", scale), const("one", 1.0), const("big_negative", -10000.0), const("axes12", [1, 2], np.int64),
             const("sqrt2", np.sqrt(2.0)), const("half", 0.5)]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", SEQ]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", SEQ])]
    model = make_model(nodes, inputs, [tensor("encoded", ["batch", SEQ, HIDDEN])], inits, opset=17)
    onnx.save_model(model, str(path))
    return model


def test_an_encoder_block_has_no_unknown_operator_and_cuts_between_its_layers(tmp_path):
    model = _encoder(tmp_path / "encoder.onnx")
    analysis = analyze(load_graph(tmp_path / "encoder.onnx", {"input_ids": (2, SEQ), "attention_mask": (2, SEQ)}))
    assert analysis.unknown_ops == {}
    assert analysis.graph.info("encoded").shape == (2, SEQ, HIDDEN)  # the open batch fixed at 2
    singles = {cut.tensors[0] for cut in analysis.cuts if len(cut.tensors) == 1}
    assert {"res1", "h1", "res2"} <= singles  # after the attention and inside the feed-forward one tensor crosses
    # Before the attention the mask crosses beside the hidden state: the second input is a real input of the split.
    assert any(set(cut.tensors) == {"h0", "attention_mask"} for cut in analysis.cuts)
    attention_macs = 2 * 2 * HEADS * SEQ * SEQ * (HIDDEN // HEADS)
    projections = 2 * SEQ * HIDDEN * HIDDEN * 4 + 2 * 2 * SEQ * HIDDEN * 4 * HIDDEN
    assert analysis.totals.macs > attention_macs + projections
    worst, checked = max_chain_error(analysis, model)
    assert checked == len(analysis.cuts) and worst < 1e-4


def test_einsum_and_fused_attention_macs(tmp_path):
    nodes = [helper.make_node("Einsum", ["a", "b"], ["c"], name="bmm", equation="bij,bjk->bik"),
             helper.make_node("Attention", ["c", "w", "bias"], ["y"], name="attn", domain="com.microsoft",
                              num_heads=2)]
    model = make_model(nodes, [tensor("a", [2, 8, 4]), tensor("b", [2, 4, 16])], [tensor("y", [2, 8, 16])],
                       [weight("w", [16, 48], 1), weight("bias", [48], 2)])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save_model(model, str(tmp_path / "fused.onnx"))
    costs = {c.name: c.macs for c in analyze(load_graph(tmp_path / "fused.onnx")).nodes}
    assert costs["bmm"] == 2 * 8 * 4 * 16
    assert costs["attn"] == 2 * 8 * 16 * 48 + 2 * 2 * 8 * 8 * 16
