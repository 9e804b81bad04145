"""The ACE flow: the seven steps of Ghorbani et al. (2019), each a cached Prefect task.

    1. load images      scan-images, load-images
    2. superpixels      superpixels (three resolutions, de-duplicated)
    3. patches          superpixel crops resized to the model input (made on the fly, never stored)
    4. embed            embed (activations, Parquet), gradients (class-logit gradients)
    5. cluster          cluster, filter-concepts, concept-activations
    6. CAV + TCAV       cav-tcav, mapped over every random set (and layer)
    7. report           statistical-test, report
   (8. evaluate         --evaluate: SSC/SDC of the top concepts on the scoring images, in the report)

Only small things travel between tasks: content keys, paths and small dataclasses. Every array
lives in the working directory (see :mod:`ace.storage.layout`); every task is cached on the
content keys of its inputs, so a second run recomputes nothing and a run that changes only
``num_random_exp`` reuses every activation.
"""

import json
from typing import Optional

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from ace.storage.layout import WorkDir
from ace.flows.runs import results_with_progress, tracked_run
from ace.tasks.caching import fresh, map_fresh, outputs_exist
from ace.tasks.cav import cav_task, concept_acts_task
from ace.tasks.cluster import cluster_task, filter_task
from ace.tasks.embed import embed_task, gradients_task
from ace.tasks.evaluate import evaluate_task
from ace.tasks.images import load_images_task, scan_source_task
from ace.tasks.models import resolve_task
from ace.tasks.sources import ImageFiles, Superpixels
from ace.tasks.report import ReportInputs, RunInfo, report_task
from ace.tasks.stats import stats_task
from ace.tasks.superpixels import superpixels_task
from ace.tasks.validate import check_parameters


@flow(name="ace", log_prints=True, validate_parameters=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def ace_flow(
    target_class: str,
    source_dir: str,
    working_dir: str,
    model_to_run: str = "googlenet",
    model_path: Optional[str] = None,
    labels_path: Optional[str] = None,
    feature_names: list[str] = ["mixed4c"],  # noqa: B006 - a flow parameter default, never mutated
    num_random_exp: int = 20,
    max_imgs: int = 50,
    min_imgs: int = 30,
    superpixel_method: str = "slic",
    clustering_method: str = "KM",
    n_clusters: int = 25,
    fill: str = "mean",
    alpha: float = 0.01,
    correction: str = "none",
    stat_testing_filter: bool = True,
    input_size: Optional[int] = None,
    batch_size: int = 32,
    seed: int = 0,
    n_jobs: Optional[int] = None,
    cav_solver: str = "exact",
    precision: str = "auto",
    embedding: str = "crop",
    test: str = "two-sided",
    layout: str = "auto",
    evaluate: bool = False,
) -> str:
    """Explain ``target_class`` of a model with ACE; returns the path of ``ace_results.txt``.

    Writes, under ``working_dir``: the shared caches ``acts/``, ``cavs/``, ``cache/`` and the class's
    report in ``classes/<target_class>/`` (see :mod:`ace.storage.layout`). Nothing there is deleted.
    ``n_jobs`` (cores per task) defaults to all cores, shared among the task runner's workers.
    """
    parameters = json.dumps({k: v for k, v in locals().items() if k != "n_jobs"}, sort_keys=True)
    n_jobs = check_parameters(**locals())
    wd = WorkDir(working_dir)
    with tracked_run(working_dir):
        return _explain(wd, target_class, source_dir, model_to_run, model_path, labels_path, list(feature_names),
                        num_random_exp, max_imgs, min_imgs, superpixel_method, clustering_method, n_clusters, fill,
                        alpha if stat_testing_filter else 1.0, correction, input_size, batch_size, seed, n_jobs,
                        cav_solver, precision, embedding, test, layout, evaluate, parameters)


def _explain(wd: WorkDir, target_class: str, source_dir: str, model_to_run: str, model_path: Optional[str],
             labels_path: Optional[str], feature_names: list[str], num_random_exp: int, max_imgs: int, min_imgs: int,
             superpixel_method: str, clustering_method: str, n_clusters: int, fill: str, alpha: float,
             correction: str, input_size: Optional[int], batch_size: int, seed: int, n_jobs: int,
             cav_solver: str, precision: str, embedding: str, test: str, layout: str, evaluate: bool,
             parameters: str) -> str:

    # 1. load images: pick and check them; decode the class's images once at the model's input size
    #    (random sets are decoded from their files while they are embedded, never stored)
    model = resolve_task(model_to_run, model_path, labels_path, target_class, list(feature_names), input_size,
                         precision, layout)
    spec, layers = model.spec, list(model.layers)
    sets = scan_source_task(source_dir, target_class, num_random_exp, max_imgs, min_imgs, wd.root)
    image_paths = {}
    for s in (sets.discovery, sets.scoring):
        out = str(wd.images(wd.key(s.key, spec.input_size, spec.resize)))
        image_paths[s.name] = fresh(load_images_task, out)(s, spec.input_size, spec.resize, out)
    discovery_images = image_paths[sets.discovery.name]

    # 4a. the random sets' forward passes need nothing from steps 2-3: submitted first, they run
    #     while the superpixels are made (see step 4)
    pooled = embedding == "pooled"
    acts: dict[str, dict[str, str]] = {}

    def embed(name: str, source):
        acts[name] = {layer: str(wd.acts(layer, wd.key(spec, layer, source.key, embedding))) for layer in layers}
        outs = list(acts[name].values())
        return fresh(embed_task, outs).submit(spec, layers, source, pooled, outs, batch_size)

    futures = [embed(s.name, ImageFiles(s, spec.input_size, spec.resize)) for s in [sets.random_discovery, *sets.randoms]]

    # 2. superpixels of the discovery images, three resolutions, de-duplicated
    seg_out = str(wd.segments(wd.key(discovery_images, superpixel_method)))
    segments = fresh(superpixels_task, seg_out)(discovery_images, superpixel_method, seg_out, n_jobs)

    # 3. patches: every superpixel cropped, filled with the neutral value and resized to the model
    #    input; re-made from the masks whenever needed (embedding, report), never stored
    fill_rgb = spec.fill_value(fill)
    superpixels = Superpixels(discovery_images, segments, spec.input_size, fill_rgb)

    # 4. embed superpixels (and, above, random images) at every layer; gradients of the scoring images
    #    (--embedding pooled: one pass per image, superpixels pooled from its feature map)
    futures.append(embed("superpixels", superpixels))
    scoring_images = image_paths[sets.scoring.name]
    grad_outs = [str(wd.grads(layer, wd.key(spec, layer, scoring_images, model.class_idx, embedding)))
                 for layer in layers]
    grads = dict(zip(layers, fresh(gradients_task, grad_outs)(spec, layers, scoring_images, model.class_idx, pooled,
                                                              grad_outs)))
    for f in futures:
        f.result()

    # 5. cluster the superpixel embeddings of each layer and keep the clusters that are concepts
    concepts, concept_acts, cluster_paths = {}, {}, {}
    for layer in layers:
        emb = acts["superpixels"][layer]
        cl_out = str(wd.clusters(layer, wd.key(emb, clustering_method, n_clusters, seed)))
        clusters = cluster_paths[layer] = fresh(cluster_task, cl_out)(emb, clustering_method, n_clusters, seed, cl_out)
        co_out = str(wd.concepts_cache(layer, wd.key(clusters, segments, target_class, len(sets.discovery),
                                                     min_imgs, max_imgs)))
        concepts[layer] = fresh(filter_task, co_out)(clusters, segments, layer, target_class, len(sets.discovery),
                                                     min_imgs, max_imgs, co_out)
        ca_out = str(wd.acts(layer, wd.key("concepts", concepts[layer], emb)))
        concept_acts[layer] = fresh(concept_acts_task, ca_out)(concepts[layer], emb, ca_out)

    # 6. a CAV for every concept (and random_discovery) against every random set, scored by TCAV
    jobs = [(layer, r.name) for layer in layers for r in sets.randoms]
    null = sets.random_discovery.name
    cav_outs = [str(wd.cavs(layer, r, wd.key(concept_acts[layer], acts[null][layer], acts[r][layer],
                                                  grads[layer], seed, cav_solver)))
                for layer, r in jobs]
    futures = map_fresh(
        cav_task, cav_outs, concepts_path=[concepts[layer] for layer, _ in jobs],
        concept_acts_path=[concept_acts[layer] for layer, _ in jobs],
        random_discovery_acts=[acts[null][layer] for layer, _ in jobs], random_acts=[acts[r][layer] for layer, r in jobs],
        grads_path=[grads[layer] for layer, _ in jobs], layer=[layer for layer, _ in jobs],
        random_set=[r for _, r in jobs], seed=unmapped(seed), solver=unmapped(cav_solver),
    )
    scores = results_with_progress(futures, f"CAVs and TCAV of '{target_class}' against {len(jobs)} random sets")

    # 7. statistical test against random_discovery, then the report
    tested = stats_task(scores, alpha, correction, test)
    settings = (("superpixels", superpixel_method), ("clustering", f"{clustering_method}, {n_clusters} clusters"),
                ("embedding", embedding), ("precision", spec.precision),
                ("layouts", ", ".join(f"{l}: {k}" for l, k in spec.layouts)), ("CAV solver", cav_solver),
                ("fill", fill), ("seed", str(seed)))
    info = RunInfo(target_class, model.class_idx, model_to_run, tuple(layers), num_random_exp, len(sets.discovery),
                   len(sets.scoring), alpha, correction, test=test, settings=settings)

    # 8. (optional) SSC/SDC: the scoring images' superpixels, assigned to concepts, kept or removed;
    #    an evaluation made earlier (ace evaluate) of the same concepts stays in the report
    layer = layers[0]
    sc_seg_out = str(wd.segments(wd.key(scoring_images, superpixel_method)))
    scoring_sp = Superpixels(scoring_images, sc_seg_out, spec.input_size, fill_rgb)
    sc_acts = [str(wd.acts(layer, wd.key(spec, layer, scoring_sp.key, embedding)))]
    ev_out = str(wd.evaluation(target_class, wd.key(spec, layer, sc_acts, acts["superpixels"][layer],
                                                    cluster_paths[layer], concepts[layer], tested, fill_rgb, seed)))
    if evaluate:
        fresh(superpixels_task, sc_seg_out)(scoring_images, superpixel_method, sc_seg_out, n_jobs)
        fresh(embed_task, sc_acts)(spec, [layer], scoring_sp, pooled, sc_acts, batch_size)
        fresh(evaluate_task, ev_out)(spec, layer, scoring_images, sc_seg_out, sc_acts[0], acts["superpixels"][layer],
                                     cluster_paths[layer], concepts[layer], tested, model.class_idx, fill_rgb, seed,
                                     ev_out)
    evaluation = ev_out if outputs_exist(ev_out) else None
    inputs = ReportInputs(tuple(cluster_paths.items()), spec.resize, evaluation, parameters)
    stamp = str(wd.report_stamp(target_class, wd.key(info, scores, tested, concepts, superpixels.key, grads, inputs)))
    report_out = [stamp, str(wd.target(target_class).summary_path)]  # a deleted report folder is written again
    summary = fresh(report_task, report_out)(wd.root, info, tested, scores, concepts, discovery_images, superpixels,
                                             grads[layers[0]], list(sets.discovery.files), fill_rgb, report_out, inputs)
    kept = sum(t.significant for t in tested)
    print(f"ACE found {kept} significant concepts of {len(tested)} for '{target_class}'. Report: {summary}")
    return summary

