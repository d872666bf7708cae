"""Video split inference: feature sequences coded as one low-delay stream, frame by frame, with bounded memory.

- :mod:`fcm.video.container`: the video stream format (a header, then one access unit per frame).
- :mod:`fcm.video.sources`: frames from a video file, a folder of images, or a generated camera-motion clip.
- :mod:`fcm.video.pipeline`: ``encode_video`` / ``decode_video`` (front → pack → streaming codec → access units and
  back).
"""
