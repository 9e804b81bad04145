"""ACE's steps as pure functions (arrays in, arrays out) and the thin Prefect tasks around them."""
