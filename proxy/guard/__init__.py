"""The SQL guard: analyse untrusted SQL, rewrite it under obligations, re-validate it.

Pure functions over sqlglot trees (and pglast for the second opinion); the only I/O is the
optional catalog introspection in `catalog`.
"""
