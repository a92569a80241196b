"""The data: CMRxRecon files (``cmrxrecon``), the synthetic phantom written in that format
(``phantom``), k-space to images (``kspace``), and the paired slices of the paper (``pairs``).
Depends on nothing else of the package but its errors and file helpers."""
