"""How a detector is fitted: FinetuneConfig, free of torch so that the CLI reads its option
defaults from it without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from netflowgen.detect.labels import Budget, parse_budget

__all__ = ["FinetuneConfig", "HEAD_INITS", "HEAD_INPUTS", "MODES", "SURPRISE_WEIGHTS"]

MODES = ("full", "probe", "last-k")
HEAD_INPUTS = ("hidden", "surprise", "both")
SURPRISE_WEIGHTS = ("free", "positive")
HEAD_INITS = ("zero", "surprise")


@dataclass(frozen=True)
class FinetuneConfig:
    """How a detector is fitted."""

    attack: tuple[str, ...] = ()
    """Classes that make a step positive (empty: the series' own ``attack`` flag)."""
    budget: Budget | str = field(default_factory=lambda: parse_budget("0.1"))
    """Labels to use: a Budget, or as the CLI spells it: "3ep" episodes, "200" steps, "0.05" of the steps."""
    mode: str = "probe"
    """full, probe (frozen backbone) or last-k. Default probe: on the real captures' unseen-victim,
    unseen-type tasks, full fine-tuning memorised the few labelled windows (test PR-AUC 0.04-0.18)
    while the frozen backbone's surprise head carried over (README, "On the real captures")."""
    last_k: int = 1
    init: str = "pretrained"
    """pretrained, or scratch (same architecture, random weights: a baseline)."""
    window: int = 32
    """Labelled steps per window."""
    history: int = 16
    """Unlabelled steps of context read before each window."""
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-2
    """Learning rate of the head (a backbone moves at ``backbone_lr_scale`` of it)."""
    window_weight: float = 0.5
    """Weight of the window-classification loss next to the per-step loss."""
    backbone_lr_scale: float = 0.1
    """Learning rate of a pre-trained backbone relative to the heads (full and last-k modes)."""
    head_inputs: str = "surprise"
    """What the step head reads: the backbone's hidden state, the pre-trained model's per-feature
    surprise, or both (see DetectorModel). Default surprise: what the pre-trained model finds
    unexpected carries over to victims and attack types no label showed, and a head on the hidden
    state learns the labelled nodes and types instead (the suite's ``flowgpt-full`` ablation)."""
    node_dropout: float = 0.5
    """Share of training windows read with the unknown node id: few labels come from few nodes,
    and a detector that keys on their identity does not carry over to other nodes."""
    head_init: str = "zero"
    """Where the step head starts, when it reads the surprise: ``zero``: small random weights;
    ``surprise``: the zero-label surprise score (every feature's NLL weighted by its log(bins), so
    the sum is the surprise in nats; hidden state and recent maxima at weight 0), standardised on
    the training windows. Default zero: with the anchor below (then a pull towards small weights),
    it beat the surprise start on the three AIP tasks (+0.22 [+0.13, +0.34] and +0.22 [+0.16,
    +0.32] PR-AUC on unseen victims at 1 and 3 episodes, +0.22 and +0.28 from UDP to TCP, ties
    from TCP to UDP; README, "On the real captures"). Without the anchor the surprise start was
    the better one: the anchor is what keeps a head fitted on a handful of windows small."""
    anchor: float = 1.0
    """L2-SP: weight of the penalty sum((p - p_start)^2) over the trained parameters, which pulls
    them back to where fine-tuning started (the pre-trained backbone and the initialised head).
    Default 1.0: a few labels of one attack type otherwise pull the head towards that type's
    features (anchor 1.0 against none, both from the surprise start: +0.27 and +0.15 PR-AUC on the
    AIP TCP-to-UDP task at 1 and 3 episodes, ties on the others). 0 for scratch."""
    surprise_weights: str = "free"
    """The step head's weights on the surprise columns: ``free``, or ``positive`` (each one
    softplus of what is trained: more surprise in any feature never lowers the score). A handful
    of labelled episodes of a few attack types can teach a free head that surprise in some
    feature means "benign" (negative weights on the UDP and ICMP surprise of a head fitted on two
    UDP and one TCP type, in the FastNetMon benchmark), which then hides an unseen attack in that
    feature. Default free: on the three AIP tasks positive weights were steadier across seeds but
    not better (5 ties, 1 loss at 1 and 3 episodes; README, "On the real captures")."""
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.budget, str):  # "3ep", "200", "0.05": as the CLI and suites spell it
            object.__setattr__(self, "budget", parse_budget(self.budget))
        if self.mode not in MODES:
            raise ValueError(f"unknown fine-tuning mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.init not in ("pretrained", "scratch"):
            raise ValueError("init is pretrained or scratch")
        if self.window < 1 or self.history < 0 or self.last_k < 1:
            raise ValueError("window and last_k must be >= 1, history >= 0")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init is one of {', '.join(HEAD_INITS)}, not {self.head_init!r}")
        if self.anchor < 0:
            raise ValueError("anchor must be >= 0")
        if self.surprise_weights not in SURPRISE_WEIGHTS:
            raise ValueError(f"surprise_weights is one of {', '.join(SURPRISE_WEIGHTS)}, not {self.surprise_weights!r}")
        if self.surprise_weights == "positive" and self.head_inputs == "hidden":
            raise ValueError("surprise_weights positive needs a head that reads the surprise (head_inputs surprise or both)")
