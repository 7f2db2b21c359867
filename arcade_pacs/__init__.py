"""ARCADE PACS: coronary stenosis detection in X-ray angiography as a DICOM plugin.

Research use only: the model has not been clinically validated.
"""

__version__ = "0.1.0"
