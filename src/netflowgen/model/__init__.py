"""The FlowGPT model (one file: flowgpt.py)."""

from netflowgen.model.flowgpt import SIZES, FlowGPT, FlowGPTConfig, FlowGPTOutput

__all__ = ["SIZES", "FlowGPT", "FlowGPTConfig", "FlowGPTOutput"]
