"""Pixels -> vectors or grids: image files, preprocessing and a pretrained CNN in NumPy.

- :mod:`rnncap.vision.image`: image files -> upright 8-bit RGB, or a one-line refusal;
- :mod:`rnncap.vision.preprocess`: centre crop, resize and scaling for a network;
- :mod:`rnncap.vision.conv`: 1x1, full and depthwise convolutions with TensorFlow "same" padding;
- :mod:`rnncap.vision.torchfile`: a restricted reader of legacy torch weight files;
- :mod:`rnncap.vision.efficientnet`: EfficientNet-Lite0 (ImageNet), forward only;
- :mod:`rnncap.vision.backbone`: the network as an extractor of rnncap's registry;
- :mod:`rnncap.vision.onnx_backbone`: a user's ONNX image model as an extractor (onnxruntime);
- :mod:`rnncap.vision.imagenet`: top-k ImageNet class names.

Nothing is imported here, so ``import rnncap`` stays light. This package does NOT know
captions, vocabularies or datasets.
"""
