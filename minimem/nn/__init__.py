"""Layers (``Module``s) built on the autograd engine, with PyTorch's names."""
from .attention import (MultiHeadAttention, TransformerBlock, TransformerLM,  # noqa: F401
                        causal_mask, merge_heads, scaled_dot_product_attention, split_heads)
from .layers import (MLP, BatchNorm1d, Dropout, Embedding, LayerNorm, Linear,  # noqa: F401
                     LayerNormFunction, RMSNorm, gelu)
from .module import Module, ModuleList, Parameter, functional_call  # noqa: F401
