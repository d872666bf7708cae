"""fcm — feature coding for machines: split inference with real video codecs on the features.

Import what you need from the subpackages (``fcm.models``, ``fcm.packing``, ``fcm.codecs``, ``fcm.bitstream``,
``fcm.pipeline``); importing ``fcm`` itself is cheap and pulls in no heavy dependency.
"""

__version__ = "0.1.0"
