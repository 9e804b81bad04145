"""ACE as Prefect flows: :func:`ace.flows.ace_flow.ace_flow` chains the steps; ``ace`` is the CLI."""
