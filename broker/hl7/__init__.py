"""HL7 v2 over MLLP: framing, parsing, inbound handlers, acknowledgements."""
