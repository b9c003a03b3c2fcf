"""The hospital's DICOM network: receive images (C-STORE SCP), build results (SR, SC), send them back."""
