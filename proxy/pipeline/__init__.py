"""The per-call guard pipeline: the `Gate` the relay asks, and its implementation over the
guard (analysis, rewriting), the policy engine (decisions) and audit."""
