"""nas_tutorial: small, tested implementations of neural architecture search methods.

Modules (read them in this order):

- ``utils``      device choice, seeding, mixed precision
- ``data``       real CIFAR-10 subsets kept as tensors on the device
- ``ops``        the candidate operations of the cell-based papers
- ``genotypes``  frozen, printable, validated cell genotypes and search-space counts
- ``drawing``    graphviz drawings and matplotlib plots used by every notebook
- ``training``   a train/evaluate loop and exact checkpoints
- one module per method (``darts``, ``genetic_cnn``, ...)
"""

__version__ = "0.1.0"
