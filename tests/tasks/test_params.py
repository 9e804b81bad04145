"""The one definition of the parameters: its checks and its flag table."""

import pytest

from ace.tasks.errors import ACEInputError
from ace.tasks.params import BY_NAME, PARAMS, check_parameters, default, flag_table, parse_layers


def test_every_parameter_is_described():
    for p in PARAMS:
        assert p.help and p.section and p.name == p.name.lower()
        if p.choices:
            assert p.default in p.choices, p.name


@pytest.mark.parametrize("name, bad, says", [
    ("max_imgs", 1, "at least 2"), ("n_clusters", 0, "at least 1"), ("num_random_exp", 1, "2 random sets"),
    ("alpha", 0, "probability"), ("seed", 2**32, "2**32"), ("input_size", 8, "32x32"), ("batch_size", True, "whole"),
    ("embedding", "fast", "one of: crop, pooled"), ("feature_names", " , ", "empty"), ("target_class", [""], "empty"),
    ("source_dir", "{{ $ACE_SOURCE_DIR }}", "template"), ("num_parallel_runs", -1, "serially"),
])
def test_bad_values_name_their_flag(name, bad, says):
    with pytest.raises(ACEInputError, match=f"--{name}") as e:
        check_parameters(**{name: bad})
    assert says in str(e.value)


def test_good_values_pass_and_n_jobs_gets_its_default():
    values = {p.name: default(p.name) for p in PARAMS if not p.required}
    assert check_parameters(**values) >= 1
    assert check_parameters(n_jobs=3) == 3
    assert parse_layers(["a,b", " c "]) == ["a", "b", "c"]


def test_the_flag_table_lists_every_flag_once():
    table = flag_table()
    for p in PARAMS:
        assert table.count(f"| `--{p.name}`") == 1
    assert "&lt;target_class&gt;" in table  # angle brackets survive Markdown
    assert BY_NAME["cav_solver"].default == "exact"
