"""The ACE flow: the seven steps of Ghorbani et al. (2019), each a cached Prefect task.

    1. load images     resolve-model, compile-model (OpenVINO), scan-images, load-images
                                                                  ace.tasks.models, ace.tasks.algorithm.images
    2. superpixels     superpixels (three resolutions, de-duplicated; the crops made on the fly)
                                                                  ace.tasks.algorithm.superpixels, patches
    3. embed           embed (activations, Parquet), gradients    ace.tasks.algorithm.embed
    4. cluster         cluster, filter-concepts                   ace.tasks.algorithm.cluster
    5. CAVs and TCAV   concept-activations, then cav-tcav mapped over every random set and layer
                                                                  ace.tasks.algorithm.cav
    6. test            statistical-test                           ace.tasks.algorithm.stats
    7. report          report                                     ace.tasks.report
   (+ evaluate         --evaluate: SSC/SDC of the top concepts)   ace.tasks.algorithm.evaluate

Only small things travel between tasks: content keys, paths and small dataclasses. Every array
lives in the working directory (see :mod:`ace.storage.layout`); every output is keyed on the
content keys of its inputs and its step's code version (:mod:`ace.tasks.versions`), so a second
run recomputes nothing and a run that changes only ``num_random_exp`` reuses every activation.
:func:`explain` is the body; the ``ace`` flow runs it with Prefect, ``ACE(...).fit(...,
runner="local")`` without.
"""

import contextlib
import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Iterator

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from ace.flows.process import tune_malloc
from ace.flows.parameters import bind, run_parameters
from ace.flows.runs import note_code_versions, tracked_run
from ace.flows.steps import (CAV_TCAV, CLUSTER, COMPILE, CONCEPT_ACTS, EMBED, EVALUATE, FILTER_CONCEPTS, GRADIENTS,
                             LOAD_IMAGES, REPORT, RESOLVE, SCAN, STATISTICAL_TEST, SUPERPIXELS, LocalSteps,
                             PrefectSteps, outputs_exist, run_label)
from ace.storage.layout import WorkDir
from ace.tasks.algorithm.sources import ImageFiles, Superpixels
from ace.tasks.algorithm.stats import ConceptScore
from ace.tasks.models.backends import compiled_path
from ace.tasks.models.loader import ModelSpec
from ace.tasks.params import check_parameters, parse_layers
from ace.tasks.report.info import ReportInputs, RunInfo
from ace.tasks.versions import step_version as v

tune_malloc()  # the process that runs the steps: memory flat from class to class


@flow(name="ace", flow_run_name="ace-{target_class}", log_prints=True, validate_parameters=True,
      task_runner=ThreadPoolTaskRunner(max_workers=1))
@run_parameters()
def ace_flow(**params: Any) -> str:
    """Explain ``target_class`` of a model with ACE; returns the path of ``ace_results.txt``.

    Writes, under ``working_dir``: the shared caches ``acts/``, ``cavs/``, ``cache/`` and the class's
    report in ``classes/<class>/`` (see :mod:`ace.storage.layout`). Nothing there is deleted.
    ``n_jobs`` (cores per task) defaults to all cores, shared among the task runner's workers.
    """
    return explain(bind(ace_flow.fn, params), PrefectSteps())


def explain_locally(params: dict[str, Any]) -> str:
    """:func:`explain` without Prefect (no server, no task runs): the same files at the same paths."""
    return explain(bind(ace_flow.fn, params), LocalSteps())


def explain(params: dict[str, Any], steps) -> str:
    """The seven steps for one class; ``steps`` runs them (:mod:`ace.flows.steps`). Returns the path
    of the class's ``ace_results.txt``."""
    with class_run(params, steps) as run:
        return run.summary


@dataclass(frozen=True)
class ClassRun:
    """What a class's run made (paths, small things): what explaining other images with its concepts needs."""

    summary: str
    spec: ModelSpec
    layers: tuple[str, ...]
    class_idx: int
    fill: tuple[float, float, float]
    superpixel_method: str
    embedding: str
    batch_size: int
    clusters: dict[str, str]
    concepts: dict[str, str]
    superpixel_acts: dict[str, str]
    cavs: dict[str, tuple[str, ...]]
    tested: tuple[ConceptScore, ...]


@contextlib.contextmanager
def class_run(params: dict[str, Any], steps) -> Iterator[ClassRun]:
    """Check the parameters, run the seven steps and yield everything they made; the run stays
    recorded in the working directory (:func:`ace.flows.runs.tracked_run`) while the block runs."""
    recorded = json.dumps({k: v for k, v in params.items() if k != "n_jobs"}, sort_keys=True)
    params["n_jobs"] = check_parameters(**params)
    params["feature_names"] = parse_layers(params["feature_names"])
    p = SimpleNamespace(**params)
    wd = WorkDir(p.working_dir)
    with tracked_run(p.working_dir):
        note_code_versions(wd)
        yield _seven_steps(wd, p, steps, recorded)


def _clustering(p) -> str:
    """How the concepts were clustered, as the report says it."""
    consensus = p.clustering_method == "KM" and p.consensus > 1
    return f"{p.clustering_method}, {p.n_clusters} clusters" + (f", consensus of {p.consensus} runs" if consensus else "")


def _seven_steps(wd: WorkDir, p: SimpleNamespace, steps, recorded: str) -> ClassRun:
    cls = p.target_class
    alpha = p.alpha if p.stat_testing_filter else 1.0

    # 1. load images: the model, the image sets (checked); the class's images decoded once at the
    #    model's input size (random sets are decoded from their files while they are embedded)
    model = steps.run(RESOLVE, p.model_to_run, p.model_path, p.labels_path, cls, list(p.feature_names), p.input_size,
                      p.precision, p.layout, p.backend, str(wd.compiled_dir), label=run_label(p.model_to_run, cls))
    spec, layers = model.spec, list(model.layers)
    futures = []  # steps that run beside the main line, all waited for before clustering
    if spec.backend == "openvino":  # converted on a worker while the images are scanned and segmented
        futures.append(steps.submit(COMPILE, spec, layers, out=str(compiled_path(spec, layers, wd.compiled_dir)),
                                    label=run_label(p.model_to_run, *layers)))
    sets = steps.run(SCAN, p.source_dir, cls, p.num_random_exp, p.max_imgs, p.min_imgs, wd.root, label=cls)
    image_paths = {}
    for role, s in (("discovery", sets.discovery), ("scoring", sets.scoring)):
        out = str(wd.images(wd.key(v("load-images"), s.key, spec.input_size, spec.resize)))
        image_paths[role] = steps.run(LOAD_IMAGES, s, spec.input_size, spec.resize, out=out, label=run_label(cls, role))
    discovery_images, scoring_images = image_paths["discovery"], image_paths["scoring"]

    # 3a. the random sets' forward passes need nothing from step 2: submitted first, they run while
    #     the superpixels are made
    acts: dict[str, dict[str, str]] = {}

    def embed(name: str, source, label: str):
        acts[name] = {layer: str(wd.acts(layer, wd.key(v("embed"), spec, layer, source.key, p.embedding)))
                      for layer in layers}
        return steps.submit(EMBED, spec, layers, source, p.embedding, out=list(acts[name].values()),
                            batch_size=p.batch_size, compiled_dir=str(wd.compiled_dir), label=run_label(label, *layers))

    futures += [embed(s.name, ImageFiles(s, spec.input_size, spec.resize), s.name)
                for s in [sets.random_discovery, *sets.randoms]]

    # 2. superpixels of the discovery images, three resolutions, de-duplicated; each is cropped,
    #    filled with the neutral value and resized to the model input whenever needed, never stored
    seg_out = str(wd.segments(wd.key(v("superpixels"), discovery_images, p.superpixel_method)))
    segments = steps.run(SUPERPIXELS, discovery_images, p.superpixel_method, out=seg_out, n_jobs=p.n_jobs,
                         label=run_label(cls, "discovery"))
    fill_rgb = spec.fill_value(p.fill)
    superpixels = Superpixels(discovery_images, segments, spec.input_size, fill_rgb)

    # 3. embed the superpixels at every layer (--embedding pooled: one pass per image, superpixels
    #    pooled from its feature map); the class-logit gradients of the scoring images
    futures.append(embed("superpixels", superpixels, f"{cls}-superpixels"))
    grad_outs = [str(wd.grads(layer, wd.key(v("gradients"), spec, layer, scoring_images, model.class_idx,
                                            p.embedding))) for layer in layers]
    grads = dict(zip(layers, steps.run(GRADIENTS, spec, layers, scoring_images, model.class_idx, p.embedding,
                                       out=grad_outs, label=run_label(cls, "scoring", *layers))))
    for f in futures:
        f.result()

    # 4. cluster the superpixel embeddings of each layer; keep the clusters that are concepts
    concepts, concept_acts, cluster_paths = {}, {}, {}
    for layer in layers:
        emb = acts["superpixels"][layer]
        cl_out = str(wd.clusters(layer, wd.key(v("cluster"), emb, p.clustering_method, p.n_clusters, p.seed,
                                               p.consensus)))
        cluster_paths[layer] = steps.run(CLUSTER, emb, p.clustering_method, p.n_clusters, p.seed, out=cl_out,
                                         consensus=p.consensus, label=run_label(cls, layer))
        co_out = str(wd.concepts_cache(layer, wd.key(v("filter-concepts"), cluster_paths[layer], segments, cls,
                                                     len(sets.discovery), p.min_imgs, p.max_imgs)))
        concepts[layer] = steps.run(FILTER_CONCEPTS, cluster_paths[layer], segments, layer, cls, len(sets.discovery),
                                    p.min_imgs, p.max_imgs, out=co_out, label=run_label(cls, layer))
        ca_out = str(wd.acts(layer, wd.key(v("concept-activations"), "concepts", concepts[layer], emb)))
        concept_acts[layer] = steps.run(CONCEPT_ACTS, concepts[layer], emb, out=ca_out, label=run_label(cls, layer))

    # 5. a CAV for every concept (and random_discovery) against every random set, scored by TCAV
    jobs = [(layer, r.name) for layer in layers for r in sets.randoms]
    null = sets.random_discovery.name
    cav_outs = [str(wd.cavs(layer, r, wd.key(v("cav-tcav"), concept_acts[layer], acts[null][layer], acts[r][layer],
                                             grads[layer], p.seed, p.cav_solver))) for layer, r in jobs]
    futures = steps.map(
        CAV_TCAV, cav_outs, labels=[run_label(cls, layer, r) for layer, r in jobs],
        shared=dict(seed=p.seed, solver=p.cav_solver),
        concepts_path=[concepts[layer] for layer, _ in jobs], concept_acts_path=[concept_acts[layer] for layer, _ in jobs],
        random_discovery_acts=[acts[null][layer] for layer, _ in jobs], random_acts=[acts[r][layer] for layer, r in jobs],
        grads_path=[grads[layer] for layer, _ in jobs], layer=[layer for layer, _ in jobs],
        random_set=[r for _, r in jobs])
    scores = steps.results(futures, f"CAVs and TCAV of '{cls}' against {len(jobs)} random sets")

    # 6. the statistical test of every concept against random_discovery
    tested = steps.run(STATISTICAL_TEST, scores, alpha, p.correction, p.test, label=cls)

    # (+) SSC/SDC: the scoring images' superpixels, assigned to concepts, kept or removed; an
    #     evaluation made earlier (ace evaluate) of the same concepts stays in the report
    layer = layers[0]
    sc_seg_out = str(wd.segments(wd.key(v("superpixels"), scoring_images, p.superpixel_method)))
    scoring_sp = Superpixels(scoring_images, sc_seg_out, spec.input_size, fill_rgb)
    sc_acts = [str(wd.acts(layer, wd.key(v("embed"), spec, layer, scoring_sp.key, p.embedding)))]
    ev_out = str(wd.evaluation(cls, wd.key(v("evaluate"), spec, layer, sc_acts, acts["superpixels"][layer],
                                           cluster_paths[layer], concepts[layer], tested, fill_rgb, p.seed)))
    if p.evaluate:
        steps.run(SUPERPIXELS, scoring_images, p.superpixel_method, out=sc_seg_out, n_jobs=p.n_jobs,
                  label=run_label(cls, "scoring"))
        steps.run(EMBED, spec, [layer], scoring_sp, p.embedding, out=sc_acts, batch_size=p.batch_size,
                  compiled_dir=str(wd.compiled_dir), label=run_label(cls, "scoring-superpixels", layer))
        steps.run(EVALUATE, spec, layer, scoring_images, sc_seg_out, sc_acts[0], acts["superpixels"][layer],
                  cluster_paths[layer], concepts[layer], tested, model.class_idx, fill_rgb, p.seed, out=ev_out,
                  label=run_label(cls, layer))

    # 7. the report: summary (txt, json), galleries, HTML page, and the working directory's index
    settings = (("superpixels", p.superpixel_method), ("clustering", _clustering(p)),
                ("embedding", p.embedding), ("precision", spec.precision),
                ("layouts", ", ".join(f"{l}: {k}" for l, k in spec.layouts)), ("CAV solver", p.cav_solver),
                ("fill", p.fill), ("seed", str(p.seed)))
    info = RunInfo(cls, model.class_idx, p.model_to_run, tuple(layers), p.num_random_exp, len(sets.discovery),
                   len(sets.scoring), alpha, p.correction, test=p.test, settings=settings)
    evaluation = ev_out if outputs_exist(ev_out) else None
    inputs = ReportInputs(tuple(cluster_paths.items()), spec.resize, evaluation, recorded,
                          (scoring_images, sc_seg_out) if evaluation else None)
    stamp = str(wd.report_stamp(cls, wd.key(v("report"), info, scores, tested, concepts, superpixels.key, grads,
                                            inputs)))
    report_out = [stamp, str(wd.target(cls).summary_path)]  # a deleted report folder is written again
    summary = steps.run(REPORT, wd.root, info, tested, scores, concepts, discovery_images, superpixels,
                        grads[layers[0]], list(sets.discovery.files), fill_rgb, inputs, out=report_out, label=cls)
    kept = sum(t.significant for t in tested)
    print(f"ACE found {kept} significant concepts of {len(tested)} for '{cls}'. Report: {summary}")
    return ClassRun(summary, spec, tuple(layers), model.class_idx, fill_rgb, p.superpixel_method, p.embedding,
                    p.batch_size, cluster_paths, concepts, acts["superpixels"],
                    {layer: tuple(o for (l, _), o in zip(jobs, cav_outs) if l == layer) for layer in layers},
                    tuple(tested))
