"""Export: merge the adapter into the student (merge.py), write an Ollama Modelfile whose TEMPLATE
is derived from the tokenizer's chat template and checked against it (ollama.py, gotemplate.py),
and convert the merged model to GGUF with llama.cpp's own converter and quantizer (gguf.py)."""
