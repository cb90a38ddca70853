"""VNN-COMP conventions: solving an instance, result files and the benchmark runner (``runner``; on a
Ray cluster: ``ray_runner``, the only importer of ``ray``), and the comparison with other tools' results (``compare``). The VNN-LIB parser is ``cegarnn.specs.vnnlib``;
the ``cegarnn vnnlib | bench | compare`` commands are ``cegarnn.cli.commands``.
"""
