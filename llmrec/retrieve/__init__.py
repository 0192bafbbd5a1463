"""Retrieval: catalog embeddings (cached), one faiss index per locale, and grounding of
generated titles to products."""

from llmrec.retrieve.catalog import CatalogIndex, RetrieveConfig
from llmrec.retrieve.embed import Encoder, EncoderConfig, LocaleEmbeddings, embed_catalog, product_texts
from llmrec.retrieve.ground import GroundConfig, candidate_titles, ground_titles
from llmrec.retrieve.index import IndexConfig, VectorIndex

__all__ = [
    "CatalogIndex",
    "Encoder",
    "EncoderConfig",
    "GroundConfig",
    "IndexConfig",
    "LocaleEmbeddings",
    "RetrieveConfig",
    "VectorIndex",
    "candidate_titles",
    "embed_catalog",
    "ground_titles",
    "product_texts",
]
