"""The DICOM toolkit: declared contexts, attribute helpers, bounds on hostile input (element
count, deflate), TLS, DICOMweb media types, the patient key. Nothing here imports the rest of the
package; every station of the data path may use it."""
