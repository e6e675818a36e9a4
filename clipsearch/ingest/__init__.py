"""Photos into the index: walking folders and CSVs, reading files safely, decoding, EXIF facts, thumbnails, places
from GPS positions, and the loader that encodes and writes them."""

import pillow_heif

# HEIC/HEIF (phones) through pillow-heif, for every module here that opens a photo (decoding, and the EXIF of
# facts); it applies the container's rotation itself. AVIF is Pillow's own.
pillow_heif.register_heif_opener()
