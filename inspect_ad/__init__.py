"""inspect-ad: industrial visual inspection with memory-augmented autoencoders."""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
