"""Tasks 1 and 2: candidates from several sources, features, a reranker, 100-item lists;
task 3: the title of a ranked product chosen with the generated titles."""

from llmrec.rank.candidates import CandidateConfig, CandidateSources
from llmrec.rank.pipeline import (
    RankingData,
    RankReport,
    RecommendConfig,
    check_title_settings,
    ranking_data,
    recommend,
    recommend_shard,
)
from llmrec.rank.reranker import RerankerConfig
from llmrec.rank.text import TextConfig, TextSignals, check_titles, read_titles
from llmrec.rank.titles import TitleChoiceConfig, choose_titles, ranked_titles, recommend_titles

__all__ = [
    "CandidateConfig",
    "CandidateSources",
    "RankReport",
    "RankingData",
    "RecommendConfig",
    "RerankerConfig",
    "TextConfig",
    "check_title_settings",
    "TextSignals",
    "TitleChoiceConfig",
    "check_titles",
    "choose_titles",
    "ranked_titles",
    "ranking_data",
    "read_titles",
    "recommend",
    "recommend_shard",
    "recommend_titles",
]
