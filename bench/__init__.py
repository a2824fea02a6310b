"""Benchmarks of the running bot; each module is runnable with `python -m bench.<name>`."""
