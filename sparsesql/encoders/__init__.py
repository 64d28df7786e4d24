"""Text encoders: dense (sentence-transformers) and learned sparse (SPLADE-style masked LMs)."""

from sparsesql.encoders.dense import DEFAULT_SPEC, DenseEncoder, load_dense_encoder

__all__ = ["DEFAULT_SPEC", "DenseEncoder", "load_dense_encoder"]

