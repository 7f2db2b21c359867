"""Receiving: the DICOM SCP (C-ECHO, C-STORE) that stores instances and queues their analysis."""
