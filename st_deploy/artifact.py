"""An artifact folder's fixed names: what every exporter writes and every runtime reads."""

MANIFEST_FILE = "manifest.json"
DENSE_ONNX, SPARSE_ONNX = "model.dense.onnx", "model.sparse.onnx"
TVM_LIBRARY = "model.so"
