"""The deploy table's labels say what each INT8 scope makes INT8, for every scope, in code and in the committed files."""

from __future__ import annotations

import pytest

from course_lib import results
from course_lib.deploy import variants
from course_lib.deploy.quantize import IGNORED_SCOPES, SCOPE_DESCRIPTIONS


def test_every_scope_has_a_label():
    assert set(SCOPE_DESCRIPTIONS) == set(IGNORED_SCOPES)


@pytest.mark.parametrize("runtime", ["ov_int8", "ov_int8_bf16"])
def test_the_shipped_scope_reads_as_what_is_int8(runtime):
    label = variants.parse(runtime).describe()
    assert "INT8 in: convolutions and matrix products only" in label and "not INT8" not in label
    assert "NNCF's default places" in variants.parse(f"{runtime}#nncf_defaults").describe()


@pytest.mark.parametrize("name", ["deploy_cpu.json", "deploy_r50_cpu.json"])
def test_committed_files_carry_the_current_labels(name):
    for row in results.load_results(name)["variants"]:
        variant = variants.parse(row["name"])
        if variant is not None:
            assert row["description"] == variant.describe(), row["name"]
