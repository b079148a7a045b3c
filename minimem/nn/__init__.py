"""Layers (``Module`` objects) built on the autograd engine, with PyTorch's names."""
from .attention import (MultiHeadAttention, ScaledDotProductAttention,  # noqa: F401
                        TransformerBlock, TransformerLM, causal_mask, merge_heads,
                        scaled_dot_product_attention, scaled_dot_product_attention_reference,
                        split_heads)
from .layers import (MLP, BatchNorm1d, Dropout, Embedding, GeluFunction,  # noqa: F401
                     LayerNorm, LayerNormFunction, Linear, LinearFunction, RMSNorm,
                     RowNormFunction, gelu, gelu_reference, layer_norm, layer_norm_reference,
                     linear, linear_reference, rms_norm, rms_norm_reference)
from .module import Module, ModuleList, Parameter, functional_call  # noqa: F401
from .rope import rope, rope_angles, rotate_pairs_matrix  # noqa: F401
