"""The hospital's DICOM network: receive images (C-STORE SCP), build results (SR, SC), send them back."""

from skinscreen.logsafe import silence

# pynetdicom's data set encoder and decoder log the exception of a data set they cannot handle,
# and pydicom's message quotes the element and its value (a name, a birth date): header values must
# not reach a log. The sender records its own reason; the listener answers with a status.
silence("pynetdicom.dsutils")
# pynetdicom's standard event handlers dump every PDU and DIMSE message (Affected SOP Instance UID),
# and highdicom names the source instance it copies the patient and study modules from: UIDs of a
# patient's images do not go into logs. pynetdicom's association lines ("Association Accepted")
# stay; the listener and the sender log their own lines with counts, statuses and AE titles.
silence("pynetdicom._handlers")
silence("highdicom")
