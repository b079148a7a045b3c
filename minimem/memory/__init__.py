"""The chapters: one module per memory mechanism (see each module's docstring for equations).

Each chapter re-exports its public names here, so ``minimem.memory.<name>`` reaches them.
"""
from .linear_attention import linear_attention, linear_attention_reference  # noqa: F401
from .delta_rule import (delta_rule, delta_rule_reference, gated_delta_rule,  # noqa: F401
                         transition_matrix)
from .chunked import chunk_recurrence, unit_lower_inverse, ut_transform  # noqa: F401
from .delta_layers import DeltaNet, GatedDeltaNet, LinearAttention, ShortConvolution  # noqa: F401
from .hopfield import (ClassicalHopfield, DenseAssociativeMemory, Hopfield,  # noqa: F401
                       HopfieldLayer, HopfieldPooling, RecallResult, Softmax1,
                       classical_energy, hebbian_weights, hopfield_energy, hopfield_retrieve,
                       hopfield_retrieve_reference, retrieval_error_bound, separation,
                       softmax1)
from .memformer import (Memformer, MemformerLayer, MemoryWriter,  # noqa: F401
                        biased_memory_normalization, slot_write_mask)
from .mrbp import (MRBPStats, bptt, mrbp, random_generators, restore_rng,  # noqa: F401
                   snapshot_rng, store_boundaries)
from .recurrent import (RecurrentMemoryTransformer, TransformerXL, XLAttention,  # noqa: F401
                        XLBlock, xl_attention_mask)
from .mrbp_experiments import (compare_bptt_mrbp, copy_segments,  # noqa: F401
                               evaluate_segments, memory_sweep, plot_accuracy,
                               plot_memory_sweep, recall_segments, segment_cell, segment_loss,
                               tmaze_segments, train_through_time)
from .titans import (NeuralMemory, memory_gradient, neural_memory,  # noqa: F401
                     titans_as_gated_delta)
from .sparse_patterns import (attended_pairs, block_layout, density,  # noqa: F401
                              expand_layout, factorized_masks, fixed_mask, mask_to_layout,
                              reachability, sparse_mask, strided_mask)
from .sparse_attention import (SparseAttention, layout_mask, sparse_attention,  # noqa: F401
                               sparse_attention_dense)
from .blockwise import (Partial, blockwise_attention, empty_partial,  # noqa: F401
                        finish_partial, merge_partials, online_softmax_trace, partial_attention)
from .knn_memory import KNNAttention, KNNMemory, Retrieved, knn_attention  # noqa: F401
from .sparse_experiments import (MemorizingLM, long_range_experiment,  # noqa: F401
                                 passkey_knn_experiment, pattern_lm)
from .product_keys import (PickedScores, WeightedRead, flat_key_topk,  # noqa: F401
                           memory_read, memory_read_reference, product_key_topk,
                           product_key_topk_reference, product_keys_flat, weighted_read)
from .product_keys_layer import ProductKeyMemory, pkm_ffn  # noqa: F401
from .product_keys_lab import (FactsRun, FactsTask, MemoryUsage, compare_pkm_mlp,  # noqa: F401
                               equal_compute_hidden, lorenz_curve, many_facts, memory_usage,
                               mlp_flops_per_token, search_cost, usage_stats)
from . import product_keys_cases  # noqa: F401,E402  (registers the pkm gradcheck cases)
from .delta_experiments import (capacity_curve, make_mqar_model, mqar_experiment,  # noqa: F401
                                overwrite_demo, plot_capacity, plot_mqar, plot_state,
                                transition_spectrum)
from ._delta_ops import RecurrentDeltaFunction  # noqa: F401
