"""FHIR order intake: Subscription lifecycle, notification endpoint, catch-up search,
ServiceRequest/Patient reading and mapping onto the same domain operations as HL7."""
