"""FHIR: Subscription management, notification endpoint, ServiceRequest/Patient reading."""
