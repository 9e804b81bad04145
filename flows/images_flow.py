"""``ace explain-images``: concept maps and concept weights of any images, with a class's concepts.

The class's own run is run again first (its recorded parameters, read from its report): every one
of its tasks is Cached, and it yields what the maps need. Then, per layer, the significant
concepts' centres, radii and CAVs (``concept-table``), and per image a cached ``explain-image`` task
(mapped over the images) writing ``classes/<class>/images/<layer>/<image stem>/``; last, the page
of every explained image, ``classes/<class>/images/index.html`` (see :mod:`ace.tasks.report.image_page`).
"""

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from ace.flows.ace_flow import ace_flow, class_run
from ace.flows.parameters import bind
from ace.flows.steps import CONCEPT_TABLE, EXPLAIN_IMAGE, IMAGES_PAGE, LocalSteps, PrefectSteps, run_label
from ace.storage.layout import WorkDir, safe_name
from ace.tasks.algorithm.images import image_files
from ace.tasks.report.results import recorded_parameters
from ace.tasks.versions import step_version as v


@flow(name="ace-explain-images", flow_run_name="explain-images-{target_class}", log_prints=True,
      validate_parameters=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def explain_images_flow(target_class: str, working_dir: str, images: list[str]) -> str:
    """Explain every image of ``images`` (files or folders) with the concepts of ``target_class`` as
    found by its run in ``working_dir``; returns the path of ``classes/<class>/images/index.html``.

    Args:
        target_class: a class already explained in ``working_dir``
        working_dir: the working directory of its run
        images: image files or folders of images (any size)
    """
    return explain_images(target_class, working_dir, images, PrefectSteps())


def explain_images_locally(target_class: str, working_dir: str, images: list[str]) -> str:
    """:func:`explain_images` without Prefect."""
    return explain_images(target_class, working_dir, images, LocalSteps())


def explain_images(target_class: str, working_dir: str, images: list[str], steps) -> str:
    wd = WorkDir(str(Path(working_dir).resolve()))
    params: dict[str, Any] = {**recorded_parameters(wd.root, target_class), "working_dir": wd.root}
    files = image_files(images)
    cls, target = target_class, wd.target(target_class)
    with class_run(bind(ace_flow.fn, params), steps) as run:  # the class's run again: every step Cached
        for layer in run.layers:
            table = steps.run(CONCEPT_TABLE, run.clusters[layer], run.superpixel_acts[layer], run.concepts[layer],
                              list(run.cavs[layer]), list(run.tested), layer,
                              out=str(wd.concept_table(layer, wd.key(v("concept-table"), run.clusters[layer],
                                                                     run.concepts[layer], list(run.cavs[layer]),
                                                                     list(run.tested)))),
                              label=run_label(cls, layer))
            outs = [[str(wd.image_stamp(cls, wd.key(v("explain-image"), run.spec, layer, digest, table,
                                                   run.superpixel_method, run.embedding, run.fill))),
                     str(target.images_dir / safe_name(layer) / stem / "map.json")] for _, digest, stem in files]
            futures = steps.map(
                EXPLAIN_IMAGE, outs, labels=[run_label(cls, layer, stem) for *_, stem in files],
                shared=dict(spec=run.spec, layer=layer, table_path=table, method=run.superpixel_method,
                            embedding=run.embedding, fill=run.fill, class_idx=run.class_idx,
                            batch_size=run.batch_size, target_class=cls, compiled_dir=str(wd.compiled_dir)),
                image_file=[f for f, _, _ in files])
            steps.results(futures, f"concept maps of {len(files)} images, layer {layer}")
        page = steps.run(IMAGES_PAGE, str(target.path), cls, label=cls)
    print(f"Concept maps of {len(files)} images for '{cls}': {page}")
    return page
