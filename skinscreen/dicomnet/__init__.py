"""The hospital's DICOM network: receive images (C-STORE SCP), build results (SR, SC), send them back."""

from skinscreen.logsafe import silence

# pynetdicom's data set encoder and decoder log the exception of a data set they cannot handle,
# and pydicom's message quotes the element and its value (a name, a birth date): header values must
# not reach a log. The sender records its own reason; the listener answers with a status.
silence("pynetdicom.dsutils")
