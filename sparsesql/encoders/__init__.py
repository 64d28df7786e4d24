"""Text encoders (dense for now)."""

from sparsesql.encoders.dense import DEFAULT_SPEC, DenseEncoder, load_dense_encoder

__all__ = ["DEFAULT_SPEC", "DenseEncoder", "load_dense_encoder"]
