"""clipsearch: search your photos with words, with CLIP vectors in Valkey."""
