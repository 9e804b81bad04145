"""The ``ace`` command line: ``ace run`` (the original ``ace_run.py`` flags, flag for flag) and
``ace demo`` (the whole flow on a generated world, offline, with the shipped demo CNN)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# the demo world holds two kinds of parts on textures: 4 clusters (ACE's 25 are for 50 natural photos, and
# split each 64-pixel part into pieces); SSC/SDC evaluated
DEMO_DEFAULTS = dict(max_imgs=40, min_imgs=15, num_random_exp=20, n_clusters=4, evaluate=True)


def _prefect_env() -> None:
    """Defaults that make Prefect quiet and patient offline; set before Prefect is imported."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    if not os.environ.get("PREFECT_API_URL"):
        # the temporary server is stopped as soon as the run ends; its event services then log
        # "Error flushing events" tracebacks about work that no longer matters
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")


def _str2bool(v: str | bool) -> bool:
    if isinstance(v, bool):
        return v
    if v.lower() in ("1", "true", "yes", "y", "on"):
        return True
    if v.lower() in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {v!r}")


def _add(p: argparse.ArgumentParser, *names: str, **kw) -> None:
    """Add an option under each name with underscores and with dashes."""
    flags = []
    for n in names:
        for variant in (n, n.replace("_", "-")):
            if f"--{variant}" not in flags:
                flags.append(f"--{variant}")
    p.add_argument(*flags, **kw)


def _common(p: argparse.ArgumentParser) -> None:
    _add(p, "num_parallel_runs", "num_parallel_workers", dest="num_parallel_runs", type=int, default=0,
         help="workers for the per-random-set fan-out; 0 runs it serially")
    _add(p, "dask_address", default=None, help="run mapped tasks on this Dask scheduler (needs the 'dask' extra)")
    _add(p, "n_jobs", type=int, default=None,
         help="cores each task may use for segmentation and CAV training (default: all cores, shared "
              "among --num_parallel_runs workers)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ace", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="explain a class of a model with ACE")
    _add(run, "source_dir", required=True, help="folder with <target_class>/, random_discovery/, random500_<i>/")
    _add(run, "working_dir", required=True, help="where caches and results go (never deleted)")
    _add(run, "target_class", "target_classes", dest="target_class", nargs="+", required=True,
         help="class(es) to explain, as named in the labels file; several run as one parent flow, one subflow each")
    _add(run, "model_to_run", default="googlenet",
         help="torchvision model name, efficientnet_lite0, ace_demo_cnn, hub:owner/repo:entry or a model file")
    _add(run, "model_path", default=None, help="weights: a state dict, a whole saved module or a TorchScript file")
    _add(run, "labels_path", default=None, help="imagenet_class_index.json or one label a line (default: packaged ImageNet)")
    _add(run, "feature_names", "bottlenecks", dest="feature_names", nargs="+", default=["mixed4c"],
         help="layer names from model.named_modules(), space or comma separated")
    _add(run, "num_random_exp", type=int, default=20, help="number of random sets random500_0..N-1")
    _add(run, "max_imgs", type=int, default=50, help="discovery images, and examples kept per concept")
    _add(run, "min_imgs", type=int, default=30, help="a cluster needs more members than this to be a concept")
    _add(run, "stat_testing_filter", type=_str2bool, nargs="?", const=True, default=True,
         help="drop concepts not significantly different from random (default true)")
    _add(run, "superpixel_method", default="slic", choices=["slic", "watershed", "quickshift", "felzenszwalb"])
    _add(run, "clustering_method", default="KM", choices=["KM", "AP", "MS", "SC", "DB"])
    _add(run, "n_clusters", type=int, default=25)
    _add(run, "fill", default="mean", choices=["mean", "parity"],
         help="patch fill: the model's mean (neutral after normalisation) or the original's 117/255")
    _add(run, "alpha", type=float, default=0.01, help="p-value threshold of the t-test")
    _add(run, "correction", default="none", choices=["none", "bonferroni", "holm", "fdr_bh"])
    _add(run, "test", default="two-sided", choices=["two-sided", "greater"],
         help="two-sided (the original): concepts that raise or lower the class; greater: only those that raise it")
    _add(run, "input_size", type=int, default=None, help="override the model's input size")
    _add(run, "batch_size", type=int, default=32)
    _add(run, "seed", type=int, default=0)
    _add(run, "precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
         help="forward passes that embed images: auto = bf16 on CPUs with native bf16 and on CUDA GPUs "
              "that support it, else fp32")
    _add(run, "embedding", default="crop", choices=["crop", "pooled"],
         help="crop: ACE's (each superpixel resized to the input, one pass each); pooled: one pass per image, "
              "superpixels pooled from its feature map (fast)")
    _add(run, "layout", default="auto", choices=["auto", "nchw", "nhwc", "tokens"],
         help="where a layer's channels are: auto finds it from the model (NCHW for CNNs, channels last for "
              "Swin, tokens for ViT, whose class token is left out of the patch grid)")
    _add(run, "cav_solver", default="exact", choices=["sgd", "exact"],
         help="exact (default): the optimum of the original's objective (hinge loss, L2 alpha 0.01), solved in "
              "the Gram space: concepts stable across seeds; sgd: the original's SGDClassifier, run in the span "
              "of the training rows (parity)")
    _add(run, "evaluate", action="store_true",
         help="also compute the paper's SSC/SDC curves of the top concepts on the scoring images (see ace evaluate)")
    _common(run)
    ev = sub.add_parser("evaluate", help="SSC/SDC of a finished class's concepts (runs its flow again: cached "
                                         "steps are reused), added to its report")
    _add(ev, "working_dir", required=True, help="the working directory of the run")
    _add(ev, "target_class", required=True, help="the class whose report to evaluate")
    _common(ev)
    demo = sub.add_parser("demo", help="run ACE offline on a generated world with the shipped demo CNN")
    _add(demo, "working_dir", default="ace_demo", help="where the world, caches and results go")
    _common(demo)
    return parser


def task_runner(num_parallel_runs: int, dask_address: str | None):
    from prefect.task_runners import ThreadPoolTaskRunner

    if dask_address:
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as e:
            raise SystemExit("--dask_address needs the 'dask' extra: pip install 'ace-flow[dask]'") from e
        return DaskTaskRunner(address=dask_address)
    return ThreadPoolTaskRunner(max_workers=max(1, num_parallel_runs))


def n_jobs(args: argparse.Namespace) -> int:
    """Cores per task: ``--n_jobs``, else all cores shared among the parallel workers."""
    if args.n_jobs:
        return args.n_jobs
    return max(1, (os.cpu_count() or 1) // max(1, args.num_parallel_runs))


def run_kwargs(args: argparse.Namespace) -> dict:
    layers = [n.strip() for item in args.feature_names for n in item.split(",") if n.strip()]
    classes = list(dict.fromkeys(args.target_class))
    return dict(
        target_class=classes[0] if len(classes) == 1 else classes, source_dir=str(Path(args.source_dir).resolve()),
        working_dir=str(Path(args.working_dir).resolve()), model_to_run=args.model_to_run,
        model_path=args.model_path, labels_path=args.labels_path, feature_names=layers,
        num_random_exp=args.num_random_exp, max_imgs=args.max_imgs, min_imgs=args.min_imgs,
        superpixel_method=args.superpixel_method, clustering_method=args.clustering_method,
        n_clusters=args.n_clusters, fill=args.fill, alpha=args.alpha, correction=args.correction,
        stat_testing_filter=args.stat_testing_filter, input_size=args.input_size, batch_size=args.batch_size,
        seed=args.seed, n_jobs=n_jobs(args), cav_solver=args.cav_solver,
        precision=args.precision, embedding=args.embedding, test=args.test,
        layout=args.layout, evaluate=args.evaluate,
    )


def evaluate_kwargs(working_dir: str, target_class: str) -> dict:
    """The parameters of a class's finished run (from its ace_results.json), with ``evaluate`` on."""
    import json

    from ace.storage.layout import WorkDir
    from ace.tasks.errors import ACEInputError

    report = WorkDir(str(Path(working_dir).resolve())).target(target_class).summary_json
    if not report.is_file():
        raise ACEInputError(f"no report of class {target_class!r} in --working_dir {working_dir} ({report} is "
                            "missing): run `ace run` for it first")
    params = json.loads(report.read_text()).get("parameters")
    if not params:
        raise ACEInputError(f"{report} was written by an older version that did not record its parameters: run "
                            "its `ace run` command again with --evaluate")
    return {**params, "evaluate": True}


def demo_kwargs(working_dir: str) -> dict:
    from ace.tasks.demo import DEMO_CLASS, DEMO_LAYER, make_world
    from ace.tasks.validate import check_working_dir

    wd = check_working_dir(Path(working_dir).resolve())
    world = wd / "world"
    if not (world / "masks" / "parts.json").is_file():
        make_world(world, num_random_sets=DEMO_DEFAULTS["num_random_exp"])
    return dict(target_class=DEMO_CLASS, source_dir=str(world), working_dir=str(wd), model_to_run="ace_demo_cnn",
                model_path=None, labels_path=str(world / "labels.txt"), feature_names=[DEMO_LAYER], **DEMO_DEFAULTS)


def _input_error_names() -> tuple[str, ...]:
    """Class names of bad input as Prefect writes them in failed states ("... exception NAME: ...")."""
    from ace.tasks.errors import ACEInputError

    classes, names = [ACEInputError], []
    while classes:
        c = classes.pop()
        names.append(c.__name__ + ":")
        classes.extend(c.__subclasses__())
    return tuple(names)


class _QuietConsole(logging.Filter):
    """On the terminal: bad input as one line (its traceback stays in the Prefect logs), no
    tracebacks from the temporary server's shutdown after a successful run, the classes' table once
    (the command prints it), and, on the command's own server (no UI, gone when the command ends),
    no "View at" links to it."""

    def __init__(self, hide_links: bool = False) -> None:
        super().__init__()
        self.hide_links = hide_links
        self.input_errors = _input_error_names()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.hide_links and str(record.msg).startswith("View at "):
            return False
        if str(record.msg).startswith("ACE classes:"):
            return False  # the command prints this table on stdout itself
        from ace.tasks.errors import ACEInputError

        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None and not isinstance(exc, ACEInputError):
            exc = exc.__cause__ or exc.__context__
        if exc is not None or any(name in str(record.msg) for name in self.input_errors):
            return False  # bad input: the CLI prints it as one line (the Prefect logs keep the details)
        if record.name.startswith(("prefect.server", "uvicorn")) and record.levelno >= logging.ERROR:
            return False  # the temporary server's own troubles at shutdown ("Error flushing events")
        if str(record.msg).startswith(("Stopping temporary server", "Still processing items")):
            return False  # shutdown chatter after the run's outcome is printed
        return True


def quiet_console(own_server: bool = False) -> None:
    """Install :class:`_QuietConsole` on the console handlers Prefect configured."""
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()
    quiet = _QuietConsole(hide_links=own_server)
    for logger in [logging.getLogger(), *(logging.getLogger(n) for n in ("uvicorn", "fastapi", "prefect"))]:
        for h in logger.handlers:
            h.addFilter(quiet)


def _error(message: str) -> int:
    print(f"ace: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _prefect_env()
    from ace.flows.server import start_for_command

    # boots on another core while torch is imported; stopped at exit, after Prefect's own exit
    # hooks have sent their last logs and events to it
    server = start_for_command(args.dask_address)
    return _checked_run(args, server)


def _checked_run(args: argparse.Namespace, server) -> int:
    from ace.tasks.errors import ACEInputError
    from ace.tasks.validate import check_parameters

    try:
        kwargs = (run_kwargs(args) if args.command == "run" else evaluate_kwargs(args.working_dir, args.target_class)
                  if args.command == "evaluate" else demo_kwargs(args.working_dir))
        kwargs["n_jobs"] = n_jobs(args)
        check_parameters(**kwargs)
        from ace.tasks.models import load_labels

        load_labels(kwargs["labels_path"])  # a bad labels file fails every class: say so before starting
    except ACEInputError as e:
        return _error(str(e))
    from ace.flows.server import adopt, import_while_booting, later_imports, run_settings
    from ace.tasks.weights import model_modules

    server = adopt(server)
    quiet_console(own_server=server is not None)
    if server is not None:
        import_while_booting(server, later_imports(model_modules(kwargs["model_to_run"])))
        try:
            server.wait()
        except RuntimeError as e:
            return _error(f"{e}\nStart one with `prefect server start` and set PREFECT_API_URL, or set "
                          "ACE_LOCAL_SERVER=0 to let Prefect start its own")
    with run_settings(server):
        return _run(args, kwargs)


def _run(args: argparse.Namespace, kwargs: dict) -> int:
    from ace.tasks.errors import ACEInputError

    runner = task_runner(args.num_parallel_runs, args.dask_address)
    if isinstance(kwargs["target_class"], list):
        from ace.flows.classes import ace_classes_flow, summary_table

        kwargs["target_classes"] = kwargs.pop("target_class")
        try:
            results = ace_classes_flow.with_options(task_runner=runner)(**kwargs)
        except ACEInputError as e:
            return _error(str(e))
        failed = [r for r in results if r.status != "done"]
        print(summary_table(results))
        for r in failed:
            print(f"ace: error: class {r.target_class!r}: {r.error}", file=sys.stderr)
        return 2 if failed else 0
    from ace.flows.ace_flow import ace_flow

    try:
        summary = ace_flow.with_options(task_runner=runner)(**kwargs)
    except ACEInputError as e:
        return _error(str(e))
    print(f"Report: {summary}")
    print(f"Concept galleries: {Path(summary).parent.parent / 'results'}")
    print(f"HTML report: {Path(summary).parent.parent / 'index.html'}")
    for line in extra_lines(summary):
        print(line)
    return 0


def extra_lines(summary: str) -> list[str]:
    """The ground truth and SSC/SDC lines of a finished report, if it has them."""
    import json

    from ace.tasks.evaluate import summary_lines as evaluation_lines
    from ace.tasks.groundtruth import summary_lines

    data = json.loads(Path(summary).with_suffix(".json").read_text())
    return ((summary_lines(data["ground_truth"]) if data.get("ground_truth") else [])
            + (evaluation_lines(data["evaluation"]) if data.get("evaluation") else []))


def exit_now(code: int) -> None:
    """End the command with ``code`` once its work is done, skipping the interpreter's teardown.

    With torch, Prefect and scikit-learn loaded, freeing every module takes 1-2 s after the last
    exit hook, and none of it writes anything. Everything that matters runs first, in the order the
    interpreter would run it: other threads are joined and Prefect's thread exit hooks send the last
    logs and events, then the ``atexit`` hooks (logging flushed, the command's Prefect server stopped),
    then the standard streams are flushed.
    """
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)  # what the interpreter calls first at exit
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def entry() -> None:
    """The ``ace`` console script."""
    exit_now(main())


if __name__ == "__main__":
    exit_now(main())
