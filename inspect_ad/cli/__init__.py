"""The command line: image commands (fit, calibrate, segment, inspect, evaluate, demo) and video commands."""
from inspect_ad.cli.image import main

__all__ = ["main"]
