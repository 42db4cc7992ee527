"""The model layer: provider registry, the offline llama.cpp model, usage and cost."""
