"""Export: ONNX (standard ops or TensorRT plugin nodes), TensorRT engines, parity checks."""
