"""Drop-in for the original ACE script: ``python ace_run.py --target_class zebra --source_dir ...``.

Takes the original's flags (``--num_parallel_runs`` or ``--num_parallel_workers``, ...) and runs
the Prefect flow; same as ``ace run ...``.
"""

import sys

from ace.flows.cli import exit_now, main

if __name__ == "__main__":
    exit_now(main(["run", *sys.argv[1:]]))
