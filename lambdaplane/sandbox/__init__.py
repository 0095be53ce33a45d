"""Execution environments: pooled network namespaces, the zygote, isolation, the Runtime API."""
