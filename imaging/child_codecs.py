"""Every decoder a child may need, registered on import.

Only processes that decode pixels import this: the forkserver (it is in
``CHILD_PRELOAD``, so each child starts with the codecs loaded) and, in
inline mode, the web process. pillow-heif adds HEIC; Pillow's own plugins
add AVIF, TIFF and the rest.
"""

import pillow_heif
from PIL import Image

Image.init()
pillow_heif.register_heif_opener(thumbnails=False)
