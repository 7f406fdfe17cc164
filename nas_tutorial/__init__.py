"""nas_tutorial: small, tested implementations of neural architecture search methods.

Modules (read them in this order):

- ``utils``      device choice, seeding, mixed precision
- ``data``       real CIFAR-10 subsets kept as tensors on the device
- ``ops``        the candidate operations of the cell-based papers
- ``genotypes``  frozen, printable, validated cell genotypes and search-space counts
- ``drawing``    graphviz drawings and matplotlib plots used by every notebook
- ``search``     the pattern of every search: config, steps, records, checkpoints, progress
- ``training``   a train/evaluate loop that resumes exactly
- ``cells``      the stack of cells, and the evaluation network built from any genotype (DARTS, ENAS, PNAS, NAO)
- ``evaluators`` evaluate a population in-process, on a process pool or on a Ray cluster; train from scratch
- ``blocks``     the MobileNetV2-style blocks of FBNet (and SPOS), a parameter and multiply-add counter
- one module per method: ``enas`` (its search spaces: ``enas_space``), ``darts``, ``fbnet``,
  ``genetic_cnn`` (its search space: ``genetic_cnn_space``), ``pnas``, ``spos``, ``nao``
- ``figures``    regenerates ``images/`` (``python -m nas_tutorial.figures``)
"""

__version__ = "0.1.0"
