"""Tools on a tagged ONNX model: query (``_retrieve``), cut out a module (``_extract``), the
functions form (``_functions``), per-module checks against PyTorch (``_verify``), per-module
time in ONNX Runtime (``_profile``) and the offline HTML page (``_report``)."""
