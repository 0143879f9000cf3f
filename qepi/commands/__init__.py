"""The command handlers behind ``qepi``: one function per command, called by :mod:`qepi.cli`
with the parsed options as keyword arguments. A handler loads and checks what the user
gave, calls the library (:mod:`qepi.experiments`, :mod:`qepi.diagnostics`, :mod:`qepi.bench`),
prints, and returns the exit code; it is the only place that prints results.

- :mod:`qepi.commands.experiments`: ``train``, ``compare``, ``marks``, ``report``
- :mod:`qepi.commands.sweep`: ``sweep`` (and ``sweep --tune``)
- :mod:`qepi.commands.diagnose`: ``diagnose ...`` and ``circuits ...``
- :mod:`qepi.commands.config`: ``config show`` and ``config reference``
- :mod:`qepi.commands.bench`: ``bench exact`` and ``bench aer``
"""
