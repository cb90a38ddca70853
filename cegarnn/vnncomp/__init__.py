"""VNN-COMP conventions: solving an instance, result files and the benchmark runner (``runner``), and
the comparison with other tools' results (``compare``). The VNN-LIB parser is ``cegarnn.specs.vnnlib``;
the ``cegarnn vnnlib | bench | compare`` commands are ``cegarnn.cli.commands``.
"""
