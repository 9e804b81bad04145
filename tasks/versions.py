"""The code version of every cached step: part of the content key of everything the step writes.

Bump a step's number when a change to its code changes what it writes (a fix, another default,
another file format); its outputs in existing working directories are then recomputed, and so are
the outputs of every step after it (their keys hold the paths of their inputs), while the steps
before it stay cached. A change that leaves every output as it was (speed, messages) keeps the
number. ``docs/working-dir.md`` says what an upgrade recomputes.
"""

STEP_VERSIONS: dict[str, int] = {
    "resolve-model": 1,        # ace.tasks.models (loading, layer names, layouts, precision)
    "compile-model": 1,        # ace.tasks.models.backends, loader.write_compiled: the model converted for OpenVINO
    "scan-images": 1,          # ace.tasks.algorithm.images: which images a run uses
    "load-images": 1,          # ace.tasks.algorithm.images: decoding and resizing
    "superpixels": 1,          # ace.tasks.algorithm.superpixels
    "embed": 1,                # ace.tasks.algorithm.embed, forward, pooled_embedding, sources, patches
    "gradients": 1,            # ace.tasks.algorithm.embed (write_gradients), forward
    "cluster": 3,              # ace.tasks.algorithm.cluster (cluster_embeddings; 2: consensus clustering; 3: its
                               # KMeans runs on one thread each, as documented: the clusters no longer depend on the cores)
    "filter-concepts": 1,      # ace.tasks.algorithm.cluster (filter_concepts)
    "concept-activations": 1,  # ace.tasks.algorithm.cav (write_concept_acts)
    "cav-tcav": 2,             # ace.tasks.algorithm.cav (train_cav, tcav_score; 2: exact CAVs fit on every example)
    "statistical-test": 1,     # ace.tasks.algorithm.stats
    "evaluate": 3,             # ace.tasks.algorithm.evaluate, fidelity (2: completeness, C-Deletion/Insertion; 3: where)
    "report": 3,               # ace.tasks.report (2: link to images/, completeness and fidelity; 3: where concepts fire)
    "concept-table": 1,        # ace.tasks.algorithm.concept_maps (write_concept_table)
    "explain-image": 1,        # ace.tasks.algorithm.concept_maps, ace.tasks.report.image_page
    "images-page": 1,          # ace.tasks.report.image_page (write_images_index)
}


def step_version(step: str) -> str:
    """``<step>@<version>``: the part of a content key that names the code that made the output."""
    return f"{step}@{STEP_VERSIONS[step]}"
