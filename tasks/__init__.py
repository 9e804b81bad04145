"""ACE's steps as pure functions (arrays in, arrays out, files written where told), grouped by concern:
``algorithm`` (the seven steps), ``models`` (any classifier, its layers and precision), ``report``
(summary, galleries, HTML, result objects) and ``demo`` (the demo world); ``params`` defines every
run parameter once and ``versions`` the steps' code versions. Nothing here imports Prefect: the
tasks around these functions are in :mod:`ace.flows.steps`."""
