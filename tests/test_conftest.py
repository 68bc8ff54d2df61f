"""The test helpers themselves: a user's clone (no ../shared beside it) still runs every test."""

from __future__ import annotations

import conftest
import pytest


def test_missing_spec_checker_leaves_out_only_that_check(monkeypatch, tmp_path):
    monkeypatch.setattr(conftest, "SPEC_CHECKER", tmp_path / "absent" / "check_spec.py")
    with pytest.warns(conftest.SpecCheckerMissing):
        conftest.check_spec(tmp_path / "model.onnx")  # returns: the calling test goes on


@pytest.mark.skipif(not conftest.SPEC_CHECKER.is_file(), reason="needs ../shared beside the checkout")
def test_present_spec_checker_fails_on_a_bad_model(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"")
    with pytest.raises(AssertionError):
        conftest.check_spec(bad)
