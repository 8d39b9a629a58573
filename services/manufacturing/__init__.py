"""Manufacturing: apheresis, chain of identity and custody, the lot's stages, QC and release."""
