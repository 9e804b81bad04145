"""The working directory's layout: every path, and class folders unique to their class's name."""

from ace.storage.layout import WorkDir, class_folder, concept_folder, concept_name, safe_name


def test_layout_paths():
    wd = WorkDir("/w")
    assert str(wd.acts("_blocks.10", "k")) == "/w/acts/_blocks.10/k.parquet"
    assert str(wd.legacy_summary) == "/w/results_summaries/ace_results.txt"
    fire = wd.target("fire engine")  # not file-safe: its file-safe form and a short hash of the name
    assert str(fire.summary_path) == "/w/classes/fire_engine-0aedf6/results_summaries/ace_results.txt"
    assert str(fire.summary_json) == "/w/classes/fire_engine-0aedf6/results_summaries/ace_results.json"
    assert str(fire.results_dir) == "/w/classes/fire_engine-0aedf6/results"
    assert str(wd.target("fire_engine").path) == "/w/classes/fire_engine"
    assert class_folder("fire engine") != class_folder("fire-engine") != class_folder("fire_engine")
    assert concept_folder("_blocks.10", concept_name("fire engine", 3)) == "_blocks.10_fire_engine_concept3"
    assert str(wd.cavs("layer3", "random500_0", "k")) == "/w/cavs/layer3/random500_0-k.npz"
    assert safe_name("features/4 c") == "features_4_c"
