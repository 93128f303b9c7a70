"""Reference values from what you built: SNP MEASUREMENT, TDX MRTD/RTMRs (``motte measure``)."""
