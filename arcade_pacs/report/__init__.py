"""Reporting: TID 1500 Comprehensive 3D SR documents built with highdicom."""
