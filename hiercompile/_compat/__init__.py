"""The one place where private names of torch, onnxscript, onnx-ir and transformers are used.

Each use names the versions it was checked on and falls back to a public path when the
private name is missing, with one debug log line.
"""
