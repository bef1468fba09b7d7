"""rnncap: image captioning with recurrent networks, written from scratch in NumPy.

Importing the package needs only NumPy; data files, images, progress bars, plots
and COCO metrics import their libraries lazily, where they are used.
"""

__version__ = "0.1.0"
