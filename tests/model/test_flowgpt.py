"""FlowGPT computes the function its docstring describes, whatever the faster formulation:

- the input layer equals a Linear layer over the one-hot traffic bins ⊕ one-hot time fields,
  and the row-gather that preceded embedding_bag (values and gradients);
- the loss equals the per-feature cross-entropy, feature by feature (values and gradients),
  with uneven bin counts (the padded grid) and even ones (the plain view);
- the parameter names and shapes a run directory's safetensors hold are unchanged;
- flops_per_step() counts the matmuls the model performs, no more (FlopCounterMode agrees).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from netflowgen.model import FlowGPT, FlowGPTConfig

UNEVEN = FlowGPTConfig(bins=(3, 7, 1, 5), n_nodes=6, n_groups=3, context=12, n_layer=2, n_head=2, d_model=16)
EVEN = FlowGPTConfig(bins=(6, 6, 6), n_nodes=6, n_groups=3, context=12, n_layer=2, n_head=2, d_model=16)


def inputs(cfg: FlowGPTConfig, B: int = 5, T: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    T = T or cfg.context
    traffic = torch.stack([torch.randint(0, b, (B, T), generator=g) for b in cfg.bins], -1).to(torch.uint8)
    time = torch.stack([torch.randint(0, s, (B, T), generator=g) for s in cfg.time_sizes], -1).to(torch.uint8)
    targets = torch.stack([torch.randint(0, b, (B, T), generator=g) for b in cfg.bins], -1)
    targets[0, -3:] = -1  # padding at the end of a window
    targets[1, 2, 1] = -1  # a single ignored target
    return {"traffic": traffic, "time": time, "node": torch.randint(0, cfg.n_nodes, (B,), generator=g),
            "group": torch.randint(0, cfg.n_groups, (B,), generator=g), "targets": targets}


def model_of(cfg: FlowGPTConfig, seed: int = 0) -> FlowGPT:
    torch.manual_seed(seed)
    m = FlowGPT(cfg)
    with torch.no_grad():  # non-zero biases, so that a dropped bias would show
        for n, p in m.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.1)
    return m


def one_hot_embed(m: FlowGPT, traffic: torch.Tensor, time: torch.Tensor, node: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """The paper's formulation: Linear(one-hot traffic bins ⊕ one-hot time fields) + embeddings."""
    sizes = list(m.cfg.bins) + list(m.cfg.time_sizes)
    codes = torch.cat([traffic, time], -1).long()
    one_hot = torch.cat([F.one_hot(codes[..., i], s) for i, s in enumerate(sizes)], -1).float()  # (B, T, sum)
    x = F.linear(one_hot, m.input_weight.t(), m.input_bias)
    x = x + m.node_emb(node)[:, None] + m.group_emb(group)[:, None]
    return x + m.pos_emb.weight[: traffic.shape[1]]


def gather_embed(m: FlowGPT, traffic: torch.Tensor, time: torch.Tensor, node: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """The formulation embedding_bag replaced: gather (B, T, F + 4, d) rows, then sum them."""
    cols = torch.cat([traffic, time], -1).long() + m.offsets
    x = F.embedding(cols, m.input_weight).sum(2) + m.input_bias
    x = x + m.node_emb(node)[:, None] + m.group_emb(group)[:, None]
    return x + m.pos_emb.weight[: traffic.shape[1]]


def per_feature_nll(m: FlowGPT, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(…, F) one cross-entropy per feature over its own slice of the logits; 0 where ignored."""
    parts = [F.cross_entropy(lg.reshape(-1, lg.shape[-1]).float(), targets[..., f].reshape(-1), ignore_index=-1, reduction="none")
             for f, lg in enumerate(logits.split(list(m.cfg.bins), -1))]
    return torch.stack(parts, -1).view(targets.shape)


def grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, params))


@pytest.mark.parametrize("cfg", [UNEVEN, EVEN], ids=["uneven", "even"])
def test_input_layer_is_a_linear_layer_over_one_hots(cfg: FlowGPTConfig) -> None:
    m = model_of(cfg)
    x = inputs(cfg, T=cfg.context - 2)
    args = (x["traffic"], x["time"], x["node"], x["group"])
    got = m.embed(*args)
    for reference in (one_hot_embed, gather_embed):
        want = reference(m, *args)
        assert got.shape == want.shape == (5, cfg.context - 2, cfg.d_model)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # Same gradients for every input parameter.
    w = torch.randn_like(got)
    params = [m.input_weight, m.input_bias, m.node_emb.weight, m.group_emb.weight, m.pos_emb.weight]
    for a, b in zip(grads((m.embed(*args) * w).sum(), params), grads((one_hot_embed(m, *args) * w).sum(), params)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_input_layer_sees_every_field() -> None:
    """Changing one time field or one feature's bin of one step changes that step's input only."""
    m = model_of(UNEVEN)
    x = inputs(UNEVEN)
    base = m.embed(x["traffic"], x["time"], x["node"], x["group"])
    for name, field, size in (("traffic", 1, 7), ("time", 3, 60)):
        changed = {k: v.clone() for k, v in x.items()}
        changed[name][2, 4, field] = (int(changed[name][2, 4, field]) + 1) % size
        y = m.embed(changed["traffic"], changed["time"], x["node"], x["group"])
        diff = (y - base).abs().sum(-1)
        assert diff[2, 4] > 0 and diff.sum() == diff[2, 4], name


@pytest.mark.parametrize("cfg", [UNEVEN, EVEN], ids=["uneven", "even"])
def test_loss_is_the_per_feature_cross_entropy(cfg: FlowGPTConfig) -> None:
    m = model_of(cfg)
    x = inputs(cfg)
    out = m(x["traffic"], x["time"], x["node"], x["group"], targets=x["targets"])
    want_nll = per_feature_nll(m, out.logits, x["targets"])
    torch.testing.assert_close(m.feature_nll(out.logits, x["targets"]), want_nll)
    assert (m.feature_nll(out.logits, x["targets"])[x["targets"] < 0] == 0).all()
    # The loss: mean over features of each feature's mean over its kept targets.
    keep = x["targets"] >= 0
    per_feature = torch.stack([want_nll[..., f][keep[..., f]].mean() for f in range(cfg.n_features)])
    torch.testing.assert_close(out.feature_loss, per_feature)
    torch.testing.assert_close(out.loss, per_feature.mean())
    # And its gradients, through the whole model.
    params = [p for _, p in m.named_parameters()]
    again = m(x["traffic"], x["time"], x["node"], x["group"])
    keep_f = keep.sum((0, 1)).clamp(min=1)
    ref_loss = (per_feature_nll(m, again.logits, x["targets"]).sum((0, 1)) / keep_f).mean()
    for (name, _), a, b in zip(m.named_parameters(), grads(out.loss, params), grads(ref_loss, params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.parametrize("cfg", [UNEVEN, EVEN], ids=["uneven", "even"])
def test_feature_log_probs_are_each_features_log_softmax(cfg: FlowGPTConfig) -> None:
    m = model_of(cfg)
    logits = torch.randn(3, 4, sum(cfg.bins))
    logp = m.feature_log_probs(logits)
    assert logp.shape == (3, 4, cfg.n_features, max(cfg.bins))
    for f, lg in enumerate(m.feature_logits(logits)):
        b = cfg.bins[f]
        torch.testing.assert_close(logp[..., f, :b], lg.log_softmax(-1))
        assert torch.isneginf(logp[..., f, b:]).all()


def test_bf16_logits_give_an_fp32_loss() -> None:
    m = model_of(UNEVEN)
    x = inputs(UNEVEN)
    logits = torch.randn(5, UNEVEN.context, sum(UNEVEN.bins)).bfloat16()
    nll = m.feature_nll(logits, x["targets"])
    assert nll.dtype == torch.float32
    torch.testing.assert_close(nll, per_feature_nll(m, logits.float(), x["targets"]))


def test_parameter_names_and_shapes_are_those_of_saved_runs() -> None:
    """Run directories hold safetensors by these names: the model must keep loading them."""
    m = FlowGPT(UNEVEN)
    d, n_in = UNEVEN.d_model, sum(UNEVEN.bins) + sum(UNEVEN.time_sizes)
    expected = {"input_weight": (n_in, d), "input_bias": (d,), "node_emb.weight": (6, d), "group_emb.weight": (3, d),
                "pos_emb.weight": (12, d), "ln_f.weight": (d,), "ln_f.bias": (d,), "head.weight": (16, d), "head.bias": (16,)}
    for i in range(UNEVEN.n_layer):
        expected |= {f"blocks.{i}.ln1.weight": (d,), f"blocks.{i}.ln1.bias": (d,), f"blocks.{i}.ln2.weight": (d,),
                     f"blocks.{i}.ln2.bias": (d,), f"blocks.{i}.attn.qkv.weight": (3 * d, d), f"blocks.{i}.attn.qkv.bias": (3 * d,),
                     f"blocks.{i}.attn.proj.weight": (d, d), f"blocks.{i}.attn.proj.bias": (d,),
                     f"blocks.{i}.mlp.up.weight": (4 * d, d), f"blocks.{i}.mlp.up.bias": (4 * d,),
                     f"blocks.{i}.mlp.down.weight": (d, 4 * d), f"blocks.{i}.mlp.down.bias": (d,)}
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == expected


@pytest.mark.parametrize("T", [12, 7])
def test_flops_per_step_counts_the_matmuls_performed(T: int) -> None:
    """Per position: 6 x the matmul weights (forward and backward, as FlopCounterMode counts the
    mm/addmm the model runs: the input layer is a gather, not a matmul) plus causal attention."""
    cfg = UNEVEN
    m = model_of(cfg)
    x = inputs(cfg, B=3, T=T)
    counter = FlopCounterMode(display=False)
    with counter:
        m(x["traffic"], x["time"], x["node"], x["group"], targets=x["targets"]).loss.backward()
    counts = counter.get_flop_counts()["Global"]
    matmul = sum(v for k, v in counts.items() if k.__name__.split(".")[0] in ("mm", "addmm", "bmm", "baddbmm"))
    positions = 3 * T
    assert matmul == 6 * m.matmul_params() * positions
    d, L = cfg.d_model, cfg.n_layer
    assert m.matmul_params() == L * (3 * d * d + d * d + 8 * d * d) + d * sum(cfg.bins)
    # Attention: q.k and the weighted sum, 2 x 2 x d FLOPs per (query, visible key) pair and
    # layer forward, 3x that with the backward; a causal window of T has T (T + 1) / 2 pairs.
    attention = 3 * 4 * d * L * 3 * (T * (T + 1) // 2)  # 3 windows
    assert m.flops_per_step(T) * positions == 6 * m.matmul_params() * positions + attention
    assert m.flops_per_step() == m.flops_per_step(cfg.context)
    assert math.isclose(m.flops_per_step(T) - 6 * m.matmul_params(), 6 * L * d * (T + 1))
