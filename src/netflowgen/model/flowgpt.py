"""FlowGPT: a GPT-style decoder over node series, as NetFlowGen describes it.

Each step of a node's series is one position. Its input vector is

    Linear(one-hot traffic bins ⊕ one-hot time fields) + node embedding + group embedding + position

and the decoder predicts, at every position t, the bin of every traffic feature at step t + 1.
The shared linear layer over one-hot vectors is computed as a sum of rows of one weight table
(the columns the one-hot selects), which is the same function without building the one-hots:
one ``embedding_bag`` (sum mode) per step, which never materialises the (B, T, F + 4, d_model)
rows it adds up. The loss is one cross-entropy over every feature's logits laid out as a
(…, F, max_bins) grid (a plain view when every feature has the same number of bins).

Read top to bottom: config, attention, MLP, block, model. Nothing here imports training code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["FlowGPTConfig", "FlowGPT", "FlowGPTOutput", "SIZES"]

#: Time fields of the paper: day of week, day of month, hour, minute.
TIME_SIZES: tuple[int, ...] = (7, 31, 24, 60)


@dataclass(frozen=True)
class FlowGPTConfig:
    """Shape of a FlowGPT model."""

    bins: tuple[int, ...]
    """Number of bins of each traffic feature, in feature order."""
    n_nodes: int
    """Node vocabulary size, the unknown id 0 included."""
    n_groups: int
    """Group vocabulary size, the unknown id 0 included."""
    context: int = 64
    """Longest history (steps) the model attends to."""
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    dropout: float = 0.0
    time_sizes: tuple[int, ...] = field(default=TIME_SIZES)
    """Sizes of the time fields' one-hots (the paper's 7 + 31 + 24 + 60)."""

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_head ({self.n_head})")
        if min(self.bins, default=0) < 1 or not self.bins:
            raise ValueError("every feature needs at least one bin")
        if self.n_nodes < 1 or self.n_groups < 1 or self.context < 1:
            raise ValueError("n_nodes, n_groups and context must be positive")
        object.__setattr__(self, "bins", tuple(int(b) for b in self.bins))
        object.__setattr__(self, "time_sizes", tuple(int(t) for t in self.time_sizes))

    @property
    def n_features(self) -> int:
        return len(self.bins)

    def to_dict(self) -> dict:  # type: ignore[type-arg]
        d = asdict(self)
        d["bins"], d["time_sizes"] = list(self.bins), list(self.time_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FlowGPTConfig:  # type: ignore[type-arg]
        return cls(**{**d, "bins": tuple(d["bins"]), "time_sizes": tuple(d["time_sizes"])})


#: Named sizes: tiny for tests (seconds on a CPU), small for CPUs, base for a GPU.
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 2, "n_head": 4, "d_model": 64, "context": 64},
    "small": {"n_layer": 4, "n_head": 8, "d_model": 256, "context": 128},
    "base": {"n_layer": 12, "n_head": 12, "d_model": 768, "context": 512},
}


@dataclass
class FlowGPTOutput:
    """What a forward pass returns."""

    hidden: torch.Tensor
    """(B, T, d_model) final representation of each step (after the last norm)."""
    logits: torch.Tensor
    """(B, T, sum(bins)) next-step logits of every feature, concatenated in feature order."""
    loss: torch.Tensor | None = None
    """Mean over features of the next-step cross-entropy, when targets were given."""
    feature_loss: torch.Tensor | None = None
    """(n_features,) the cross-entropy of each feature."""


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: FlowGPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: FlowGPTConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.down = nn.Linear(4 * cfg.d_model, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x))))


class Block(nn.Module):
    """Pre-norm decoder block."""

    def __init__(self, cfg: FlowGPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class FlowGPT(nn.Module):
    """The decoder. ``forward`` reads token tensors (see :meth:`forward`), returns FlowGPTOutput."""

    def __init__(self, cfg: FlowGPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        sizes = list(cfg.bins) + list(cfg.time_sizes)
        # Column offset of each one-hot block inside the shared input layer.
        self.register_buffer("offsets", torch.tensor([0] + sizes[:-1]).cumsum(0), persistent=False)
        self.input_weight = nn.Parameter(torch.empty(sum(sizes), cfg.d_model))
        self.input_bias = nn.Parameter(torch.zeros(cfg.d_model))
        self.node_emb = nn.Embedding(cfg.n_nodes, cfg.d_model)
        self.group_emb = nn.Embedding(cfg.n_groups, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        # One head per feature, stored as one matrix; logits split by cfg.bins.
        self.head = nn.Linear(cfg.d_model, sum(cfg.bins))
        # For the loss, every feature's logits gathered into a (F, max_bins) grid, padding masked.
        width = max(cfg.bins)
        starts = torch.tensor([0, *cfg.bins[:-1]]).cumsum(0)
        grid = starts[:, None] + torch.arange(width)[None, :]  # (F, max_bins)
        pad = torch.arange(width)[None, :] >= torch.tensor(cfg.bins)[:, None]  # (F, max_bins)
        self.register_buffer("grid_index", grid.masked_fill(pad, 0), persistent=False)
        self.register_buffer("grid_pad", pad, persistent=False)
        # Every feature with the same bin count: the grid is a view of the logits, no gather.
        self._uniform_bins = len(set(cfg.bins)) == 1
        # log(bins) of each feature: the NLL of a uniform guess, the unit of feature_surprise. A
        # one-bin feature's NLL is always 0; 1 keeps it 0. Derived from cfg, so not in checkpoints.
        log_bins = torch.tensor([math.log(b) if b > 1 else 1.0 for b in cfg.bins], dtype=torch.float32)
        self.register_buffer("log_bins", log_bins, persistent=False)
        self.apply(self._init)
        nn.init.normal_(self.input_weight, std=0.02)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("down.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))  # GPT-2 scaled residual init

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def embed(self, traffic: torch.Tensor, time: torch.Tensor, node: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """(B, T, d_model) input vectors of steps."""
        T = traffic.shape[1]
        if T > self.cfg.context:
            raise ValueError(f"sequence of {T} steps is longer than the model's context ({self.cfg.context})")
        cols = torch.cat([traffic, time], dim=-1).long() + self.offsets  # (B, T, F + 4)
        # Linear(one-hot) == the sum of the selected rows of input_weight: one bag per step.
        x = F.embedding_bag(cols.flatten(0, -2), self.input_weight, mode="sum")  # (B * T, d)
        x = x.view(*cols.shape[:-1], -1) + self.input_bias  # (B, T, d)
        x = x + self.node_emb(node.long())[:, None, :] + self.group_emb(group.long())[:, None, :]
        return x + self.pos_emb(torch.arange(T, device=traffic.device))  # (B, T, d)

    def forward(
        self,
        traffic: torch.Tensor,
        time: torch.Tensor,
        node: torch.Tensor,
        group: torch.Tensor,
        targets: torch.Tensor | None = None,
    ) -> FlowGPTOutput:
        """
        traffic: (B, T, F) bins of every feature; time: (B, T, 4) time fields;
        node, group: (B,) ids; targets: (B, T, F) bins of the *next* step (-1 to ignore).
        """
        x = self.drop(self.embed(traffic, time, node, group))
        for block in self.blocks:
            x = block(x)
        hidden = self.ln_f(x)  # (B, T, d)
        logits = self.head(hidden)  # (B, T, sum(bins))
        if targets is None:
            return FlowGPTOutput(hidden, logits)
        feature_loss = self.feature_nll(logits, targets).sum(dim=(0, 1))  # (F,)
        counts = (targets >= 0).sum(dim=(0, 1)).clamp(min=1)  # (F,)
        feature_loss = feature_loss / counts
        return FlowGPTOutput(hidden, logits, feature_loss.mean(), feature_loss)

    def feature_grid(self, logits: torch.Tensor) -> torch.Tensor:
        """(…, F, max_bins) fp32 logits of every feature's bins (padding bins at -inf)."""
        logits = logits.float()
        if self._uniform_bins:
            return logits.unflatten(-1, (self.cfg.n_features, self.cfg.bins[0]))
        return logits[..., self.grid_index].masked_fill(self.grid_pad, float("-inf"))

    def feature_log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(…, F, max_bins) log-probabilities of every feature's bins (padding bins at -inf)."""
        return self.feature_grid(logits).log_softmax(dim=-1)

    def feature_nll(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(…, F) negative log-likelihood of each target bin; 0 where the target is -1.

        One cross-entropy over all positions and features at once, bins as the class dimension of
        a (N, max_bins, F) view: a softmax over a short last dimension (a few bins) is several times
        slower on a CPU than one across the features, each bin a contiguous run of them.
        """
        grid = self.feature_grid(logits).flatten(0, -3)  # (N, F, max_bins)
        nll = F.cross_entropy(grid.transpose(1, 2), targets.reshape(grid.shape[:2]).long(), ignore_index=-1, reduction="none")
        return nll.view(targets.shape)  # (…, F)

    def feature_surprise(self, nll: torch.Tensor) -> torch.Tensor:
        """(…, F) per-feature NLL in units of a uniform guess over that feature's bins
        (NLL_f / log(bins_f)): 1 means "as surprising as a random bin", whatever the bin count."""
        return nll / self.log_bins

    def feature_logits(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """Split concatenated logits into one (…, bins_f) tensor per feature."""
        return list(logits.split(list(self.cfg.bins), dim=-1))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def matmul_params(self) -> int:
        """Weights that multiply activations as matrices: the blocks' projections and the heads.

        Not counted: the input table and the node, group and position embeddings, whose rows are
        gathered and added (no multiplication: an ``embedding_bag`` is not a matmul), biases and
        norms (elementwise)."""
        return sum(p.numel() for n, p in self.named_parameters() if p.dim() == 2 and "emb" not in n and n != "input_weight")

    def flops_per_step(self, context: int | None = None) -> int:
        """Training FLOPs per position (forward + backward = 3x forward) of the matmuls this
        model performs, PaLM-style: 6 x matmul_params() for the projections and heads, plus the
        attention scores and weighted sums, 12 x layers x d_model x (mean keys per query). The
        attention is causal and computed so (scaled_dot_product_attention, is_causal=True, skips
        the masked part): in a window of T positions a query attends (T + 1) / 2 keys on average,
        so half the PaLM figure (which counts T keys per query) is counted."""
        cfg = self.cfg
        T = cfg.context if context is None else context
        return 6 * self.matmul_params() + 6 * cfg.n_layer * cfg.d_model * (T + 1)
