"""Runnable samples. Each module has `run_sample(client) -> result` (used by the tests) and a
`__main__` that runs it against `kadence server` (bootstrap from KADENCE_BOOTSTRAP) with its own worker."""
