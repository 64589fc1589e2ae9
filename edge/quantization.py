"""The quantisation formats of a bundle's towers: the one list the device config, the manifest and the
exporter all check against.

    none      fp32 as exported
    dynamic   int8 weights, activations quantised at run time (ConvInteger / MatMulInteger)
    qdq_u8s8  static QDQ: uint8 activations, int8 per-channel weights (x86 with VNNI)
    qdq_s8s8  static QDQ: int8 activations and weights (ARM, onnxruntime's advice for the Pi)

The static formats calibrate activation ranges on training frames at export (export/quantize.py tells how).
"""

QUANTIZATION_FORMATS = ("none", "dynamic", "qdq_s8s8", "qdq_u8s8")
STATIC_FORMATS = ("qdq_s8s8", "qdq_u8s8")
