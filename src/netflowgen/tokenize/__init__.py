"""Tokenizing node series: bins, time fields and ids, and the token shards training reads."""

from netflowgen.tokenize.tokenizer import TIME_FIELDS, UNKNOWN_ID, BinRule, Tokenizer, TokenizerConfig, fit_part

__all__ = ["TIME_FIELDS", "UNKNOWN_ID", "BinRule", "Tokenizer", "TokenizerConfig", "fit_part"]
