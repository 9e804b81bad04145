"""The ``ace`` command line: ``ace run`` (the original ``ace_run.py`` flags, flag for flag) and
``ace demo`` (the whole flow on a generated world, offline, with the shipped demo CNN)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional

from ace.flows.process import exit_now, tune_malloc
from ace.tasks.params import BY_NAME, PARAMS, default, parse_layers

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


def _add_param(p: argparse.ArgumentParser, name: str, **override) -> None:
    """The option of a parameter of :data:`ace.tasks.params.PARAMS`, as defined there."""
    param = BY_NAME[name]
    kw: dict = {"dest": name, "help": param.help}
    if param.required:
        kw["required"] = True
    else:
        kw["default"] = default(name)
    if param.many:
        kw["nargs"] = "+"
    if param.choices:
        kw["choices"] = list(param.choices)
    if param.type is bool:
        kw.update(type=_str2bool, nargs="?", const=True, metavar="{true,false}")
        if param.default is False:  # a switch: --evaluate
            kw = {"dest": name, "help": param.help, "action": "store_true"}
    elif param.type in (int, Optional[int]):
        kw["type"] = int
    elif param.type is float:
        kw["type"] = float
    kw.update(override)
    _add(p, name, *param.aliases, **kw)


def _common(p: argparse.ArgumentParser) -> None:
    for name in ("num_parallel_runs", "dask_address", "n_jobs"):
        _add_param(p, name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ace", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="explain a class of a model with ACE (flags: docs/flags.md)")
    for param in PARAMS:
        if param.flow and param.name != "n_jobs":
            _add_param(run, param.name)
    _common(run)
    ev = sub.add_parser("evaluate", help="SSC/SDC of a finished class's concepts (runs its flow again: cached "
                                         "steps are reused), added to its report")
    _add(ev, "working_dir", required=True, help="the working directory of the run")
    _add(ev, "target_class", required=True, help="the class whose report to evaluate")
    _common(ev)
    ex = sub.add_parser("explain-images", help="concept maps and concept weights of any images, with the concepts "
                                               "of a class explained in --working_dir")
    _add(ex, "working_dir", required=True, help="the working directory of the class's run")
    _add(ex, "target_class", required=True, help="the class whose concepts to look for")
    ex.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files, or folders of images")
    _common(ex)
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
    """The flow parameters of an ``ace run`` command line."""
    kwargs = {p.name: getattr(args, p.name) for p in PARAMS if p.flow}
    classes = list(dict.fromkeys(args.target_class))
    kwargs.update(target_class=classes[0] if len(classes) == 1 else classes,
                  source_dir=str(Path(args.source_dir).resolve()), working_dir=str(Path(args.working_dir).resolve()),
                  feature_names=parse_layers(args.feature_names), n_jobs=n_jobs(args))
    return kwargs


def evaluate_kwargs(working_dir: str, target_class: str) -> dict:
    """The parameters of a class's finished run (from its ace_results.json), with ``evaluate`` on."""
    from ace.tasks.report.results import recorded_parameters

    return {**recorded_parameters(working_dir, target_class), "evaluate": True}


def demo_kwargs(working_dir: str) -> dict:
    from ace.tasks.demo.world import DEMO_CLASS, DEMO_LAYER, make_world
    from ace.tasks.params import check_working_dir

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
    tune_malloc()  # before any thread starts (see ace.flows.process)
    _prefect_env()
    from ace.flows.server import start_for_command

    # boots on another core while torch is imported; stopped at exit, after Prefect's own exit
    # hooks have sent their last logs and events to it
    server = start_for_command(args.dask_address)
    return _checked_run(args, server)


def _checked_run(args: argparse.Namespace, server) -> int:
    from ace.tasks.errors import ACEInputError
    from ace.tasks.params import check_parameters

    try:
        if args.command == "explain-images":
            from ace.tasks.algorithm.images import image_files
            from ace.tasks.report.results import recorded_parameters

            kwargs = recorded_parameters(args.working_dir, args.target_class)
            image_files(args.images)  # missing files or folders: say so before starting
        else:
            kwargs = (run_kwargs(args) if args.command == "run" else evaluate_kwargs(args.working_dir, args.target_class)
                      if args.command == "evaluate" else demo_kwargs(args.working_dir))
        kwargs["n_jobs"] = n_jobs(args)
        check_parameters(**kwargs)
        from ace.tasks.models.loader import load_labels

        load_labels(kwargs["labels_path"])  # a bad labels file fails every class: say so before starting
    except ACEInputError as e:
        return _error(str(e))
    from ace.flows.server import adopt, check_reachable, import_while_booting, later_imports, run_settings
    from ace.tasks.models.zoo import model_modules

    server = adopt(server)
    quiet_console(own_server=server is not None)
    if server is not None:
        import_while_booting(server, later_imports(model_modules(kwargs["model_to_run"])))
        try:
            server.wait()
        except RuntimeError as e:
            return _error(f"{e}\nStart one with `prefect server start` and set PREFECT_API_URL, or set "
                          "ACE_LOCAL_SERVER=0 to let Prefect start its own")
    if server is None:  # a server of Prefect's settings, or a Dask cluster: both must answer
        problem = check_reachable(args.dask_address)
        if problem:
            return _error(problem)
    with run_settings(server):
        return _run(args, kwargs)


def _run(args: argparse.Namespace, kwargs: dict) -> int:
    from ace.tasks.errors import ACEInputError

    runner = task_runner(args.num_parallel_runs, args.dask_address)
    if args.command == "explain-images":
        from ace.flows.images_flow import explain_images_flow

        try:
            page = explain_images_flow.with_options(task_runner=runner)(
                target_class=args.target_class, working_dir=str(Path(args.working_dir).resolve()),
                images=[str(Path(i).resolve()) for i in args.images])
        except ACEInputError as e:
            return _error(str(e))
        print(f"Concept maps: {page}")
        return 0
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

    from ace.tasks.algorithm.evaluate import evaluation_lines
    from ace.tasks.algorithm.groundtruth import ground_truth_lines

    data = json.loads(Path(summary).with_suffix(".json").read_text())
    return ((ground_truth_lines(data["ground_truth"]) if data.get("ground_truth") else [])
            + (evaluation_lines(data["evaluation"]) if data.get("evaluation") else []))


def entry() -> None:
    """The ``ace`` console script."""
    exit_now(main())


if __name__ == "__main__":
    exit_now(main())
