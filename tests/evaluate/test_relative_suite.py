"""A suite turns relative tokens on with ``[pretrain] relative = true`` (or ``--set
pretrain.relative=true``); pretrain_for fits its tokenizer from tokenizer_config."""

from __future__ import annotations

from pathlib import Path

import pytest

from netflowgen.evaluate.corpus import tokenizer_config
from netflowgen.evaluate.suite import load_suite
from netflowgen.series import feature_names
from tests.evaluate.test_suite import _suite


def test_relative_is_a_pretrain_setting_off_by_default(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path))
    plain = tokenizer_config(suite.pretrain)
    assert plain.relative is False and plain.features == tuple(feature_names()) and plain.n_bins == 10
    on = tokenizer_config(suite.with_settings(["pretrain.relative=true"]).pretrain)
    assert on.relative is True and on.relative_window == 16
    written = tmp_path / "relative.toml"
    written.write_text(_suite(tmp_path).read_text().replace("context = 16 }", "context = 16, relative = true }"))
    assert tokenizer_config(load_suite(written).pretrain).relative is True


def test_a_relative_setting_that_is_not_a_boolean_is_refused(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path)).with_settings(['pretrain.relative="yes"'])
    with pytest.raises(ValueError, match="relative is true or false"):
        tokenizer_config(suite.pretrain)
