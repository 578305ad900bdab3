"""paintseg: few-shot segmentation of aerial imagery by painting novel-class instances into real scenes."""

__version__ = "0.1.0"
