"""jersey-ray: a distributed sweep runner for jersey-number recognition from video tracklets."""

__version__ = "0.1.0"
