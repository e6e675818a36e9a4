"""What runs CLIP (ONNX Runtime or torch: loading, the export, the tokenizer, which model made a vector, zero-shot
labels) and what reads the words written in photos (OCR)."""
